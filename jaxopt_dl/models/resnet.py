"""Small residual networks (classic and pre-activation) for 8x8 digits."""

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


class ResidualBlock(Layers):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut.

    Classic (He et al. 2016a): ``out = act(BN(conv(act(BN(conv(x))))) + shortcut(x))``.
    Pre-activation (He et al. 2016b): ``y = act(BN(x)); out = conv(act(BN(conv(y)))) +
    shortcut``, the shortcut being ``x`` or a projection of ``y``. The projection
    (1x1 conv with the block's stride) is used when the shape changes.

    Attributes:
      features: output channels.
      strides: stride of the first convolution (2 halves the feature map).
      preactivation: pre-activation ordering instead of the classic one.
      use_batchnorm: batch norm (else identity; the convolutions then carry biases).
      kernel_init: initializer of the convolution kernels.
      activation: nonlinearity.
      bn_momentum: running-average momentum of batch norm.
      bn_epsilon: batch norm's ``eps``.
      dtype: the computation dtype (``None``: from the inputs and params).
      param_dtype: the dtype the params are stored in.
    """

    features: int
    strides: int = 1
    preactivation: bool = False
    use_batchnorm: bool = True
    kernel_init: Initializer = initializers.he_normal()
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    dtype: Optional[Any] = None
    param_dtype: Any = jnp.float32

    def conv(self, x: jax.Array, kernel: int, strides: int, name: str) -> jax.Array:
        """A square ``SAME``-padded convolution with the block's features and init.

        Args:
          x: input ``(batch, height, width, channels)``.
          kernel: kernel size (``kernel x kernel``).
          strides: stride along both spatial axes.
          name: the submodule's name.
        """
        return nn.Conv(
            self.features,
            (kernel, kernel),
            strides=(strides, strides),
            padding="SAME",
            use_bias=not self.use_batchnorm,
            kernel_init=self.kernel_init,
            conv_general_dilated=conv_general_dilated,
            name=name,
            **self.precision(),
        )(x)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        needs_projection = x.shape[-1] != self.features or self.strides != 1
        if self.preactivation:
            y = self.activation(self.normalize(x, train, "bn_1"))
            shortcut = self.conv(y, 1, self.strides, "projection") if needs_projection else x
            y = self.conv(y, 3, self.strides, "conv_1")
            y = self.activation(self.normalize(y, train, "bn_2"))
            out = self.conv(y, 3, 1, "conv_2") + shortcut
        else:
            y = self.conv(x, 3, self.strides, "conv_1")
            y = self.activation(self.normalize(y, train, "bn_1"))
            y = self.normalize(self.conv(y, 3, 1, "conv_2"), train, "bn_2")
            shortcut = x
            if needs_projection:
                shortcut = self.normalize(
                    self.conv(x, 1, self.strides, "projection"), train, "bn_projection"
                )
            out = self.activation(y + shortcut)
        self.sow("intermediates", "out", out)
        return out


class ResNet(Layers):
    """ResNet for small images: stem conv, stages of residual blocks, global average pool.

    Stage ``i`` has ``stage_sizes[i]`` blocks of ``width * 2**i`` channels; every stage
    after the first halves the feature map in its first block (8x8 -> 4x4 -> 2x2 with
    the default three stages). Flat ``(N, 64)`` inputs are reshaped to ``(N, 8, 8, 1)``.

    Attributes:
      stage_sizes: number of residual blocks per stage.
      width: channels of the stem and the first stage.
      num_classes: number of logits.
      use_batchnorm: batch norm in every block.
      preactivation: pre-activation blocks (He et al. 2016b) instead of classic ones.
      dropout_rate: dropout before the output layer (``train=True`` only).
      kernel_init: initializer of every kernel (default He normal).
      activation: nonlinearity.
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
      >>> model = ResNet(stage_sizes=(1, 1), width=4)
      >>> variables = model.init(jax.random.key(0), jnp.zeros((2, 64)), train=False)
      >>> sorted(variables)
      ['batch_stats', 'params']

    References:
      He et al. 2016a, "Deep Residual Learning for Image Recognition"; He et al. 2016b,
      "Identity Mappings in Deep Residual Networks".
    """

    stage_sizes: Sequence[int] = (1, 1, 1)
    width: int = 16
    num_classes: int = 10
    use_batchnorm: bool = True
    preactivation: bool = False
    dropout_rate: float = 0.0
    kernel_init: Initializer = initializers.he_normal()
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    output_bias_init: Initializer = initializers.zeros
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    output_scale: float = 0.25
    dtype: Optional[Any] = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        self.check_config()
        x = nn.Conv(
            self.width,
            (3, 3),
            padding="SAME",
            use_bias=not self.use_batchnorm,
            kernel_init=self.kernel_init,
            conv_general_dilated=conv_general_dilated,
            name="stem",
            **self.precision(),
        )(as_images(x))
        if not self.preactivation:
            x = self.activation(self.normalize(x, train, "bn_stem"))
        self.sow("intermediates", "stem_out", x)
        for i, n_blocks in enumerate(self.stage_sizes):
            for j in range(n_blocks):
                x = ResidualBlock(
                    self.width * 2**i,
                    strides=2 if i > 0 and j == 0 else 1,
                    preactivation=self.preactivation,
                    use_batchnorm=self.use_batchnorm,
                    kernel_init=self.kernel_init,
                    activation=self.activation,
                    bn_momentum=self.bn_momentum,
                    bn_epsilon=self.bn_epsilon,
                    name=f"stage_{i}_block_{j}",
                    **self.precision(),
                )(x, train)
        if self.preactivation:
            x = self.activation(self.normalize(x, train, "bn_final"))
        x = jnp.mean(x, axis=(1, 2))
        self.sow("intermediates", "pool_out", x)
        return self.classifier_head(x, train)
