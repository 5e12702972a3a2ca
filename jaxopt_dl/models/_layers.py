"""Shared pieces of the models: optional batch norm, optional dropout, config checks."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxopt_dl._core import check_decay, check_nonnegative
from jaxopt_dl.initializers import Initializer


class Layers(nn.Module):
    """Base of the models: batch norm and dropout switched by the subclass's fields.

    Subclasses declare ``use_batchnorm``, ``dropout_rate``, ``bn_momentum``,
    ``bn_epsilon``, ``output_scale``, ``dtype`` and ``param_dtype`` (in their own field
    order) and call these helpers inside their ``@nn.compact`` method, so the layers are
    created in the subclass's scope.

    ``dtype`` and ``param_dtype`` follow Flax's mixed-precision convention: every layer
    stores its params in ``param_dtype`` (default float32) and computes in ``dtype``
    (``None``: from the inputs and params, e.g. ``jnp.bfloat16`` for bf16 compute
    with float32 params); the training losses widen the outputs to float32.
    """

    def check_config(self) -> None:
        """Raise ``ValueError`` for a dropout rate or batch-norm momentum outside [0, 1)
        or a negative ``output_scale``."""
        check_decay("dropout_rate", getattr(self, "dropout_rate", 0.0))
        check_decay("bn_momentum", getattr(self, "bn_momentum", 0.0))
        check_nonnegative("bn_epsilon", getattr(self, "bn_epsilon", 0.0))
        check_nonnegative("output_scale", getattr(self, "output_scale", 1.0))

    def precision(self) -> dict:
        """``{"dtype", "param_dtype"}`` for a Flax layer, from the module's fields."""
        return {
            "dtype": getattr(self, "dtype", None),
            "param_dtype": getattr(self, "param_dtype", jnp.float32),
        }

    def output_init(self) -> Initializer:
        """The logits layer's kernel init: ``output_scale`` times ``kernel_init``.

        Small initial logits make the initial predictions near uniform, so the initial
        loss of ``C`` balanced classes is ``log C`` (logits of standard deviation
        ``sigma`` add about ``sigma^2 / 2``), as A. Karpathy's "A Recipe for Training
        Neural Networks" asks to verify.
        """
        scale, init = getattr(self, "output_scale", 1.0), self.kernel_init

        def scaled(key: jax.Array, shape: Any, dtype: Any = jnp.float32) -> jax.Array:
            return scale * init(key, shape, dtype)

        return scaled

    def normalize(self, x: jax.Array, train: bool, name: str) -> jax.Array:
        """Batch norm (Ioffe & Szegedy 2015) when ``use_batchnorm``, else identity.

        With ``train=True``: ``(x - mu_B) / sqrt(var_B + eps) * gamma + beta`` with the
        batch mean/biased variance, and the running averages move as
        ``ra <- momentum * ra + (1 - momentum) * batch_stat``. With ``train=False`` the
        running averages replace the batch statistics.
        """
        if not self.use_batchnorm:
            return x
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            name=name,
            **self.precision(),
        )(x)

    def dropout(self, x: jax.Array, train: bool) -> jax.Array:
        """Inverted dropout with ``dropout_rate`` when training (needs the "dropout" rng)."""
        if self.dropout_rate == 0:
            return x
        return nn.Dropout(self.dropout_rate, deterministic=not train)(x)

    def hidden_dense(self, x: jax.Array, width: int, train: bool, name: str, bn_name: str):
        """Dense -> (batch norm) -> activation, sown as ``<name>_out`` (no bias under BN)."""
        x = nn.Dense(
            width,
            use_bias=not self.use_batchnorm,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            name=name,
            **self.precision(),
        )(x)
        x = self.activation(self.normalize(x, train, bn_name))
        self.sow("intermediates", f"{name}_out", x)
        return x

    def classifier_head(self, x: jax.Array, train: bool) -> jax.Array:
        """Dropout, then the ``logits`` Dense layer (kernel :meth:`output_init`, its own
        bias init), sown as ``logits_out``."""
        x = self.dropout(x, train)
        logits = nn.Dense(
            self.num_classes,
            kernel_init=self.output_init(),
            bias_init=self.output_bias_init,
            name="logits",
            **self.precision(),
        )(x)
        self.sow("intermediates", "logits_out", logits)
        return logits
