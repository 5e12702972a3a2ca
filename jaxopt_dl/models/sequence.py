"""1-D models for sequences such as MNIST-1D: a strided 1-D CNN and a (bidirectional) GRU."""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxopt_dl import initializers
from jaxopt_dl.initializers import Initializer
from jaxopt_dl.models._layers import Layers
from jaxopt_dl.models.conv import conv_general_dilated


def _as_sequences(x: jax.Array) -> jax.Array:
    """``(batch, time)`` -> ``(batch, time, 1)``; ``(batch, time, features)`` unchanged."""
    if x.ndim == 2:
        return x[..., None]
    if x.ndim != 3:
        raise ValueError(f"x must be (batch, time) or (batch, time, features), got shape {x.shape}")
    return x


class CNN1D(Layers):
    """[Conv1D(stride) -> [BN] -> act] per stage, flattened, then the logits.

    With the defaults this is the convolutional network of Greydanus' MNIST-1D
    benchmark: three convolutions of 25 channels (widths 5, 3, 3, stride 2, padding 1)
    take a 40-long sequence to 19, 10 and 5 positions; a linear layer reads the
    ``5 * 25`` features. ``(batch, time)`` inputs get a channel axis of size 1.

    Attributes:
      features: channels of each convolution.
      kernel_sizes: width of each convolution's window (one per entry of ``features``).
      strides: stride of every convolution.
      padding: zeros added on both ends of the sequence before every convolution.
      num_classes: number of logits.
      use_batchnorm: batch norm before each activation (convolutions then have no bias).
      dropout_rate: dropout before the output layer (``train=True`` only).
      kernel_init: initializer of every kernel (default He normal).
      activation: nonlinearity.
      bias_init: initializer of the hidden biases.
      output_bias_init: initializer of the output bias.
      bn_momentum: running-average momentum of batch norm.
      bn_epsilon: batch norm's ``eps``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = CNN1D()
      >>> variables = model.init(jax.random.key(0), jnp.zeros((2, 40)), train=False)
      >>> model.apply(variables, jnp.zeros((2, 40)), train=False).shape
      (2, 10)

    References:
      Greydanus 2020, "Scaling down deep learning".
    """

    features: Sequence[int] = (25, 25, 25)
    kernel_sizes: Sequence[int] = (5, 3, 3)
    strides: int = 2
    padding: int = 1
    num_classes: int = 10
    use_batchnorm: bool = False
    dropout_rate: float = 0.0
    kernel_init: Initializer = initializers.he_normal()
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    bias_init: Initializer = initializers.zeros
    output_bias_init: Initializer = initializers.zeros
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        self.check_config()
        if len(self.kernel_sizes) != len(self.features):
            raise ValueError(
                "kernel_sizes must have one entry per entry of features, got "
                f"kernel_sizes={tuple(self.kernel_sizes)} and features={tuple(self.features)}"
            )
        x = _as_sequences(x)
        for i, (channels, width) in enumerate(zip(self.features, self.kernel_sizes)):
            x = nn.Conv(
                channels,
                (width,),
                strides=(self.strides,),
                padding=((self.padding, self.padding),),
                use_bias=not self.use_batchnorm,
                kernel_init=self.kernel_init,
                bias_init=self.bias_init,
                conv_general_dilated=conv_general_dilated,
                name=f"conv_{i}",
            )(x)
            x = self.activation(self.normalize(x, train, f"bn_{i}"))
            self.sow("intermediates", f"conv_{i}_out", x)
        x = x.reshape(x.shape[0], -1)
        return self.classifier_head(x, train)


class GRU(Layers):
    """A gated recurrent unit over ``(batch, time, features)``, read out linearly.

    .. math:: z_t = \\sigma(x_t U_z + h_{t-1} W_z + b_z), \\quad
              r_t = \\sigma(x_t U_r + h_{t-1} W_r + b_r), \\\\
              \\tilde h_t = \\tanh(x_t U_n + r_t \\odot (h_{t-1} W_n + b_{hn}) + b_n),
              \\quad h_t = (1 - z_t) \\odot \\tilde h_t + z_t \\odot h_{t-1}

    with ``h_0 = 0`` (flax's ``GRUCell``, the form of ``torch.nn.GRU``). With
    ``bidirectional`` a second GRU reads the sequence backwards and the two states of
    each step are concatenated. ``readout="all"`` flattens the states of every step
    into the linear read-out (Greydanus' MNIST-1D GRU: 6 hidden units each way, 40
    steps, so ``2 * 6 * 40`` features); ``"last"`` reads only the final state of each
    direction. ``(batch, time)`` inputs get a feature axis of size 1.

    Attributes:
      hidden: size of the hidden state of each direction.
      num_classes: number of logits.
      bidirectional: add a GRU that reads the sequence backwards.
      readout: ``"all"`` (every step's state) or ``"last"`` (the final states).
      kernel_init: initializer of the input-to-hidden kernels and of the read-out.
      recurrent_init: initializer of the hidden-to-hidden kernels (default orthogonal).
      dropout_rate: dropout on the read-out's input (``train=True`` only).
      bias_init: initializer of the GRU's biases.
      output_bias_init: initializer of the read-out's bias.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = GRU(hidden=4)
      >>> variables = model.init(jax.random.key(0), jnp.zeros((3, 40)), train=False)
      >>> model.apply(variables, jnp.ones((3, 40)), train=False).shape
      (3, 10)

    References:
      Cho et al. 2014, "Learning Phrase Representations using RNN Encoder-Decoder";
      Greydanus 2020, "Scaling down deep learning".
    """

    hidden: int = 6
    num_classes: int = 10
    bidirectional: bool = True
    readout: str = "all"
    kernel_init: Initializer = initializers.glorot_uniform()
    recurrent_init: Initializer = initializers.orthogonal()
    dropout_rate: float = 0.0
    bias_init: Initializer = initializers.zeros
    output_bias_init: Initializer = initializers.zeros

    def _direction(self, name: str, reverse: bool) -> nn.RNN:
        cell = nn.GRUCell(
            self.hidden,
            kernel_init=self.kernel_init,
            recurrent_kernel_init=self.recurrent_init,
            bias_init=self.bias_init,
            name=f"{name}_cell",
        )
        return nn.RNN(cell, reverse=reverse, keep_order=True, name=name)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        self.check_config()
        if self.readout not in ("all", "last"):
            raise ValueError(f"readout must be 'all' or 'last', got readout={self.readout!r}")
        x = _as_sequences(x)
        directions = [self._direction("forward", reverse=False)(x)]
        if self.bidirectional:
            directions.append(self._direction("backward", reverse=True)(x))
        states = jnp.concatenate(directions, axis=-1)
        self.sow("intermediates", "hidden_out", states)
        if self.readout == "all":
            out = states.reshape(states.shape[0], -1)
        else:
            # the forward GRU ends at the last step, the backward one at the first
            ends = [directions[0][:, -1]] + [d[:, 0] for d in directions[1:]]
            out = jnp.concatenate(ends, axis=-1)
        return self.classifier_head(out, train)
