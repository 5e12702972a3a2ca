"""Helpers the contrib optimizers share: counts, torch's weight decays, params checks."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxopt_dl import _core


def _count(name: str, value: Any, low: int = 1) -> Any:
    """``value`` checked as a whole number ``>= low``; a Python number comes back as int."""
    _core.check_int(name, value, low)
    return int(value) if _core.is_python_number(value) else value


def _check_not_schedule(name: str, value: Any, why: str) -> None:
    if callable(value):
        raise TypeError(f"{name} must be a number or an array ({why}), got {name}={value!r}")


def _decays(weight_decay: Any) -> bool:
    """Whether a weight decay is applied: anything but a Python zero (traced values do)."""
    return not (_core.is_python_number(weight_decay) and weight_decay == 0)


def _need_params(params: Any, name: str) -> None:
    if params is None:
        raise ValueError(f"{name} needs the params: call update(updates, state, params)")


def _add_in_dtype(update: jax.Array, decay: jax.Array) -> jax.Array:
    """``update + decay`` in the update's dtype."""
    return (update + decay).astype(update.dtype)


def _torch_weight_decay(grads, params, learning_rate, weight_decay, decoupled):
    """torch's two weight decays: ``g + wd w`` (coupled) or ``w (1 - lr wd)`` (decoupled).

    Returns ``(grads, decay_update)``: the gradient the method sees and the update the
    decoupled decay adds to the step (zeros when coupled).
    """
    if decoupled:
        return grads, jax.tree.map(lambda p: -learning_rate * weight_decay * p, params)
    grads = jax.tree.map(lambda g, p: g + weight_decay * p, grads, params)
    return grads, jax.tree.map(jnp.zeros_like, params)
