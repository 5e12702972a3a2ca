"""A vanilla tanh recurrent network (for long-term dependency and clipping experiments)."""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxopt_dl import initializers
from jaxopt_dl.initializers import Initializer
from jaxopt_dl.models._layers import Layers


class RNN(Layers):
    """Elman RNN over ``(batch, time, features)`` with a linear read-out.

    .. math:: h_t = \\tanh(h_{t-1} W + x_t U + b), \\quad h_0 = 0, \\quad
              \\text{logits} = h_T V + c \\;\\; (\\text{or } h_t V + c \\text{ for every } t)

    (row-vector convention: ``U`` is ``(features, hidden)``, ``W`` is ``(hidden,
    hidden)``). The recurrence runs in one ``jax.lax.scan``. Repeated multiplication by
    ``W`` makes gradients vanish or explode over long sequences (Goodfellow et al. 2016,
    Sec. 10.7), which is what the clipping experiments use it for. ``(batch, time)``
    inputs get a feature axis of size 1.

    Attributes:
      hidden: size of the hidden state.
      num_classes: number of logits.
      kernel_init: initializer of ``U`` (input-to-hidden) and of the read-out ``V``.
      recurrent_init: initializer of ``W`` (hidden-to-hidden; default orthogonal).
      activation: the recurrence nonlinearity.
      return_sequence: logits for every step ``(batch, time, num_classes)`` instead of
        only the last ``(batch, num_classes)``.
      dropout_rate: dropout on the hidden states fed to the read-out (``train=True``).
      bias_init: initializer of ``b``.
      output_bias_init: initializer of ``c``.
      output_scale: the logits layer's kernel is ``output_scale`` times
        ``kernel_init`` (small initial logits: the initial loss is ``log C``).
      dtype: the computation dtype (Flax's convention; ``None``: from the inputs
        and params, ``jnp.bfloat16`` for bf16 compute).
      param_dtype: the dtype the params are stored in.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = RNN(hidden=4, num_classes=2)
      >>> variables = model.init(jax.random.key(0), jnp.zeros((3, 5, 1)))
      >>> model.apply(variables, jnp.ones((3, 5, 1))).shape
      (3, 2)

    References:
      Elman 1990; Goodfellow et al. 2016, eq. 10.8 and Sec. 10.11.1 (clipping);
      Pascanu et al. 2013.
    """

    hidden: int = 32
    num_classes: int = 10
    kernel_init: Initializer = initializers.glorot_uniform()
    recurrent_init: Initializer = initializers.orthogonal()
    activation: Callable[[jax.Array], jax.Array] = jnp.tanh
    return_sequence: bool = False
    dropout_rate: float = 0.0
    bias_init: Initializer = initializers.zeros
    output_bias_init: Initializer = initializers.zeros
    output_scale: float = 0.25
    dtype: Optional[Any] = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        self.check_config()
        if x.ndim == 2:
            x = x[..., None]
        if x.ndim != 3:
            raise ValueError(f"x must be (batch, time, features), got x with shape {x.shape}")
        precision = self.precision()
        u = self.param(
            "input_kernel", self.kernel_init, (x.shape[-1], self.hidden), precision["param_dtype"]
        )
        w = self.param(
            "recurrent_kernel",
            self.recurrent_init,
            (self.hidden, self.hidden),
            precision["param_dtype"],
        )
        b = self.param("bias", self.bias_init, (self.hidden,), precision["param_dtype"])
        x, u, w, b = nn.dtypes.promote_dtype(x, u, w, b, dtype=precision["dtype"])
        drive = jnp.swapaxes(x @ u + b, 0, 1)

        def step(h, drive_t):
            h = self.activation(h @ w + drive_t)
            return h, h

        h0 = jnp.zeros((x.shape[0], self.hidden), drive.dtype)
        _, states = jax.lax.scan(step, h0, drive)
        states = jnp.swapaxes(states, 0, 1)
        self.sow("intermediates", "hidden_out", states)
        out = states if self.return_sequence else states[:, -1]
        return self.classifier_head(out, train)
