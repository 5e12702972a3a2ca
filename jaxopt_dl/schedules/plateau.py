"""Reduce the learning rate when the monitored loss stops improving."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxopt_dl._core import (
    GradientTransformationExtraArgs,
    block,
    check_decay,
    check_in_range,
    check_int,
    check_nonnegative,
    check_positive,
    safe_increment,
    tree_scale,
    zero_count,
)

__all__ = ["ReduceLROnPlateauState", "reduce_on_plateau"]


class ReduceLROnPlateauState(NamedTuple):
    """State of ``reduce_on_plateau``; ``scale`` is the current learning-rate multiplier.

    Attributes:
      scale: the multiplier applied to the updates (starts at 1, multiplied by
        ``factor`` at each reduction, never below ``min_scale``).
      best_value: the best (lowest) averaged loss seen so far.
      plateau_count: evaluations since ``best_value`` last improved.
      cooldown_count: evaluations left before plateaus are counted again.
      count: losses accumulated in the current ``accumulation_size`` window.
      avg_value: the running mean of the losses of the current window.
    """

    scale: jax.Array
    best_value: jax.Array
    plateau_count: jax.Array
    cooldown_count: jax.Array
    count: jax.Array
    avg_value: jax.Array

    rate_scale_field = "scale"
    """The field holding the learning-rate multiplier (read by ``current_learning_rate``)."""


@block(rate_scale=lambda arguments: lambda state: state.scale)
def reduce_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: int = 0,
    accumulation_size: int = 1,
    min_scale: float = 0.0,
) -> GradientTransformationExtraArgs:
    """Multiply the updates by a scale that drops by ``factor`` when the loss plateaus.

    The loss is passed to ``update(..., value=loss)``. Every ``accumulation_size`` calls
    the average ``v`` of the values passed is compared with the best average so far:

    .. math::
      \\text{improved} \\iff v < v_{best} - (\\mathrm{rtol} |v_{best}| + \\mathrm{atol})

    An improvement resets the count of bad evaluations; a bad evaluation increments it
    (not during the ``cooldown`` evaluations that follow a reduction). When the count
    exceeds ``patience`` the scale becomes ``max(scale * factor, min_scale)`` (never
    larger than before), the count resets and the cooldown starts.

    Conventions: the threshold uses ``|v_best|``, so plateaus of NEGATIVE losses (e.g.
    log-likelihood objectives) are detected; optax's ``contrib.reduce_on_plateau`` and
    torch's ``threshold_mode="rel"`` use ``v_best * (1 - rtol)``, which for a negative
    ``v_best`` counts a slightly WORSE value as an improvement and never reduces on a flat
    negative loss. ``patience`` counts as in torch's ``ReduceLROnPlateau`` (the reduction
    happens at the ``patience + 1``-th bad evaluation); optax's and Keras' ``patience=p``
    reduce one evaluation earlier, i.e. equal ``patience=p - 1`` here. With the base
    learning rate ``lr``, ``lr * scale`` follows torch's ``ReduceLROnPlateau(mode="min",
    threshold_mode="rel", threshold=rtol, factor, patience, cooldown, min_lr=lr*min_scale,
    eps=0)`` for positive losses (torch's default ``eps=1e-8`` skips reductions smaller
    than 1e-8; here only ``min_scale`` stops them).

    Args:
      factor: multiplier applied at a reduction, in (0, 1).
      patience: bad evaluations tolerated before a reduction (>= 0).
      rtol: relative improvement threshold, in [0, 1].
      atol: absolute improvement threshold (>= 0).
      cooldown: evaluations after a reduction during which bad evaluations are ignored.
      accumulation_size: number of ``value``s averaged into one evaluation (use > 1 when
        feeding noisy minibatch losses).
      min_scale: the scale never drops below this (>= 0).

    Returns:
      A ``GradientTransformationExtraArgs``; its state is a ``ReduceLROnPlateauState``
      whose ``scale`` is the current multiplier.

    Raises:
      ValueError: any argument out of the ranges above.

    Example:
      >>> import jax.numpy as jnp, optax, jaxopt_dl as jdl
      >>> tx = optax.chain(optax.sgd(0.1), jdl.reduce_on_plateau(patience=0))
      >>> params = jnp.zeros(2)
      >>> state = tx.init(params)
      >>> for loss in (1.0, 1.0):
      ...     updates, state = tx.update(jnp.ones(2), state, params, value=loss)
      >>> float(state[1].scale)
      0.1...

    References:
      torch.optim.lr_scheduler.ReduceLROnPlateau; Keras ReduceLROnPlateau;
      optax.contrib.reduce_on_plateau.
    """
    check_positive("factor", factor)
    check_decay("factor", factor)
    check_int("patience", patience, 0)
    check_in_range("rtol", rtol, 0.0, 1.0)
    check_nonnegative("atol", atol)
    check_int("cooldown", cooldown, 0)
    check_int("accumulation_size", accumulation_size, 1)
    check_nonnegative("min_scale", min_scale)

    def init_fn(params):
        del params
        float_dtype = jnp.result_type(float)
        return ReduceLROnPlateauState(
            scale=jnp.ones([], float_dtype),
            best_value=jnp.full([], jnp.inf, float_dtype),
            plateau_count=zero_count(),
            cooldown_count=zero_count(),
            count=zero_count(),
            avg_value=jnp.zeros([], float_dtype),
        )

    def evaluate(state: ReduceLROnPlateauState) -> ReduceLROnPlateauState:
        value, best = state.avg_value, state.best_value
        threshold = jnp.where(jnp.isfinite(best), best - (rtol * jnp.abs(best) + atol), best)
        improved = value < threshold
        plateau_count = jnp.where(improved, 0, safe_increment(state.plateau_count))
        in_cooldown = state.cooldown_count > 0
        plateau_count = jnp.where(in_cooldown, 0, plateau_count)
        cooldown_count = jnp.where(in_cooldown, state.cooldown_count - 1, 0)
        reduce = plateau_count > patience
        reduced_scale = jnp.minimum(state.scale, jnp.maximum(state.scale * factor, min_scale))
        return ReduceLROnPlateauState(
            scale=jnp.where(reduce, reduced_scale, state.scale).astype(state.scale.dtype),
            best_value=jnp.where(improved, value, best),
            plateau_count=jnp.where(reduce, 0, plateau_count).astype(jnp.int32),
            cooldown_count=jnp.where(reduce, cooldown, cooldown_count).astype(jnp.int32),
            count=zero_count(),
            avg_value=jnp.zeros_like(value),
        )

    def update_fn(updates, state, params=None, *, value, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        value = jnp.asarray(value, state.avg_value.dtype)
        avg_value = (state.count * state.avg_value + value) / count
        state = state._replace(count=count, avg_value=avg_value.astype(state.avg_value.dtype))
        evaluated = evaluate(state)
        state = jax.tree.map(
            lambda new, old: jnp.where(count >= accumulation_size, new, old), evaluated, state
        )
        return tree_scale(state.scale, updates), state

    return GradientTransformationExtraArgs(init_fn, update_fn)
