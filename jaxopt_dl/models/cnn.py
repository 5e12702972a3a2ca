"""Small convolutional network for 8x8 digits."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxopt_dl import initializers
from jaxopt_dl.data import as_images
from jaxopt_dl.initializers import Initializer
from jaxopt_dl.models._layers import Layers
from jaxopt_dl.models.conv import conv_general_dilated


class CNN(Layers):
    """[Conv3x3 -> [BN] -> act -> MaxPool2x2] per stage, Dense -> [BN] -> act -> [Dropout], logits.

    For 8x8 inputs and two stages the feature maps go 8x8 -> 4x4 -> 2x2. Flat inputs
    ``(N, 64)`` and ``(N, 8, 8)`` are reshaped to ``(N, 8, 8, 1)``.

    Attributes:
      features: channels of each conv stage.
      dense: width of the dense layer after the convolutions.
      num_classes: number of logits.
      use_batchnorm: batch norm before each activation (conv layers then have no bias).
      dropout_rate: dropout before the output layer (``train=True`` only).
      kernel_init: initializer of every kernel (default He normal).
      activation: nonlinearity.
      bias_init: initializer of the hidden biases.
      output_bias_init: initializer of the output bias.
      bn_momentum: running-average momentum of batch norm.
      bn_epsilon: batch norm's ``eps``.
      output_scale: the logits layer's kernel is ``output_scale`` times
        ``kernel_init`` (small initial logits: the initial loss is ``log C``).
      dtype: the computation dtype (Flax's convention; ``None``: from the inputs
        and params, ``jnp.bfloat16`` for bf16 compute).
      param_dtype: the dtype the params are stored in.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = CNN(features=(4,), dense=8)
      >>> variables = model.init(jax.random.key(0), jnp.zeros((2, 64)), train=False)
      >>> model.apply(variables, jnp.zeros((2, 8, 8, 1)), train=False).shape
      (2, 10)
    """

    features: Sequence[int] = (16, 32)
    dense: int = 64
    num_classes: int = 10
    use_batchnorm: bool = False
    dropout_rate: float = 0.0
    kernel_init: Initializer = initializers.he_normal()
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    bias_init: Initializer = initializers.zeros
    output_bias_init: Initializer = initializers.zeros
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    output_scale: float = 0.25
    dtype: Optional[Any] = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        self.check_config()
        x = as_images(x)
        for i, channels in enumerate(self.features):
            x = nn.Conv(
                channels,
                (3, 3),
                padding="SAME",
                use_bias=not self.use_batchnorm,
                kernel_init=self.kernel_init,
                bias_init=self.bias_init,
                conv_general_dilated=conv_general_dilated,
                name=f"conv_{i}",
                **self.precision(),
            )(x)
            x = self.activation(self.normalize(x, train, f"bn_{i}"))
            self.sow("intermediates", f"conv_{i}_out", x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        x = x.reshape(x.shape[0], -1)
        x = self.hidden_dense(x, self.dense, train, "dense", "bn_dense")
        return self.classifier_head(x, train)
