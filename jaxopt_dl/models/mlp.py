"""Multilayer perceptron with optional batch norm and dropout."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxopt_dl import initializers
from jaxopt_dl.initializers import Initializer
from jaxopt_dl.models._layers import Layers


class MLP(Layers):
    """Dense -> [BatchNorm] -> activation -> [Dropout], per hidden layer, then logits.

    .. math:: h_{l} = \\phi(\\mathrm{BN}(W_l h_{l-1} + b_l)), \\quad
              \\text{logits} = W_{L} h_{L-1} + b_{L}

    Inputs of any shape ``(batch, ...)`` are flattened. With batch norm the hidden
    Dense layers have no bias (BN's ``beta`` plays that role).

    Attributes:
      hidden: widths of the hidden layers.
      num_classes: number of logits.
      use_batchnorm: batch norm before each hidden activation.
      dropout_rate: dropout after each hidden activation (``train=True`` only).
      kernel_init: initializer of every Dense kernel (default He normal, for ReLU).
      activation: hidden nonlinearity.
      bias_init: initializer of the hidden biases.
      output_bias_init: initializer of the output bias, e.g.
        ``initializers.bias_from_marginals(freqs)``.
      bn_momentum: running-average momentum of batch norm.
      bn_epsilon: batch norm's ``eps``.
      output_scale: the logits layer's kernel is ``output_scale`` times
        ``kernel_init`` (small initial logits: the initial loss is ``log C``).
      dtype: the computation dtype (Flax's convention; ``None``: from the inputs
        and params, ``jnp.bfloat16`` for bf16 compute).
      param_dtype: the dtype the params are stored in.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = MLP(hidden=(8,), num_classes=3)
      >>> variables = model.init(jax.random.key(0), jnp.zeros((2, 5)), train=False)
      >>> model.apply(variables, jnp.ones((2, 5)), train=False).shape
      (2, 3)
    """

    hidden: Sequence[int] = (128, 64)
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
        x = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            x = self.hidden_dense(x, width, train, f"dense_{i}", f"bn_{i}")
            if i < len(self.hidden) - 1:
                x = self.dropout(x, train)
        return self.classifier_head(x, train)
