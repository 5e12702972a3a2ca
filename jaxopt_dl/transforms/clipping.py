"""Gradient clipping: the remedy for cliffs and exploding gradients.

J. Petersen, "Optimization in Deep Learning" (after Goodfellow, Bengio & Courville,
Sec. 10.11.1). ``clip`` is optax's; the norm-based clips are written here because
they accumulate norms of bf16/fp16 leaves in float32 (optax squares in the leaf's
dtype, which overflows fp16 above 256).
"""

from __future__ import annotations

from typing import Optional, Union

import jax
import jax.numpy as jnp
import optax

from jaxopt_dl import _core
from jaxopt_dl._core import GradientTransformation


def _stateless(update_fn) -> GradientTransformation:
    return GradientTransformation(lambda params: _core.EmptyState(), update_fn)


@_core.block(checks={"max_delta": _core.check_nonnegative}, signature_of=optax.clip)
def clip(max_delta):
    """Clip every coordinate to ``[-max_delta, max_delta]`` (clip by value): optax.clip.

    .. math:: u = \\mathrm{clip}(g, -c, c)

    ``max_delta`` is checked when built (non-negative).
    """
    return optax.clip(max_delta)


@_core.block(kernel="clip_by_global_norm", checks={"max_norm": _core.check_nonnegative})
def clip_by_global_norm(max_norm: jax.typing.ArrayLike) -> GradientTransformation:
    """Rescale the whole update when its global norm exceeds ``max_norm`` (clip by norm).

    Hand-written, not optax's: the norm of bf16/fp16 leaves is accumulated in float32.

    .. math:: u = g \\cdot \\min(1, c / \\|g\\|)

    The direction is kept; only the step length is bounded, which is what stops a
    jump off a cliff (Pascanu et al. 2013; Goodfellow et al. 2016, Sec. 10.11.1).

    Args:
      max_norm: the largest global norm let through (>= 0).
    """

    def update_fn(updates, state, params=None):
        del params
        g_norm = _core.global_norm(updates)
        keep = g_norm < max_norm
        updates = _core.tree_map(
            lambda g: jax.lax.select(
                keep, g, ((_core.widen(g) / g_norm) * max_norm).astype(g.dtype)
            ),
            updates,
        )
        return updates, state

    return _stateless(update_fn)


@_core.block(checks={"threshold": _core.check_nonnegative})
def clip_by_block_rms(threshold: jax.typing.ArrayLike) -> GradientTransformation:
    """Rescale each leaf whose root-mean-square exceeds ``threshold``.

    Hand-written, not optax's: the RMS of bf16/fp16 leaves is accumulated in float32.

    .. math:: u_i = g_i / \\max(1, \\mathrm{rms}(g_i) / c)

    Args:
      threshold: the largest per-leaf RMS let through (>= 0).
    """

    def update_fn(updates, state, params=None):
        del params

        def clip_leaf(g):
            wide = _core.widen(g)
            rms = jnp.sqrt(jnp.mean(_core.abs_sq(wide)))
            return (wide / jnp.maximum(1.0, rms / threshold)).astype(g.dtype)

        return _core.tree_map(clip_leaf, updates), state

    return _stateless(update_fn)


def unitwise_norm(x: jax.Array, axis: Optional[Union[int, tuple]] = None) -> jax.Array:
    """Per-output-unit L2 norm, broadcast to ``x.shape`` (fan-in axes reduced).

    Accumulated and returned in at least float32 (see :func:`jaxopt_dl._core.widen`).

    Args:
      x: a parameter or gradient leaf.
      axis: the axes to reduce (default chosen by rank).
    """
    if axis is None:
        if jnp.squeeze(x).ndim <= 1:
            axis = tuple(range(x.ndim))
        elif x.ndim in (2, 3):
            axis = 0
        elif x.ndim in (4, 5):
            axis = tuple(range(x.ndim - 1))
        else:
            raise ValueError(f"unitwise_norm: pass axis for a parameter of shape {x.shape}")
    squared = jnp.sum(_core.abs_sq(_core.widen(x)), axis=axis, keepdims=True)
    return jnp.broadcast_to(jnp.sqrt(squared), x.shape)


@_core.block(checks={"clipping": _core.check_nonnegative, "eps": _core.check_nonnegative})
def adaptive_grad_clip(
    clipping: jax.typing.ArrayLike,
    eps: jax.typing.ArrayLike = 1e-3,
    axis: Optional[Union[int, tuple]] = None,
) -> GradientTransformation:
    """Adaptive gradient clipping: clip each unit's gradient relative to its weight norm.

    Hand-written, not optax's: unit norms of bf16/fp16 leaves are accumulated in float32.

    .. math:: u = g \\cdot \\min(1, \\lambda \\max(\\|w\\|, \\epsilon) / \\|g\\|)
      \\;\\text{per output unit}

    Args:
      clipping: the largest ratio of gradient norm to weight norm.
      eps: the smallest weight norm used (so zero weights can move).
      axis: the axes reduced for a unit's norm (default: by rank, see :func:`unitwise_norm`).

    References:
      Brock et al. 2021 (NFNets).
    """

    def update_fn(updates, state, params):
        if params is None:
            raise ValueError("adaptive_grad_clip needs params: call update(updates, state, params)")

        def clip_leaf(g, p):
            g_norm = unitwise_norm(g, axis)
            max_norm = clipping * jnp.maximum(unitwise_norm(p, axis), eps)
            clipped = (g * (max_norm / jnp.maximum(g_norm, 1e-6))).astype(g.dtype)
            return jnp.where(g_norm < max_norm, g, clipped)

        return _core.tree_map(clip_leaf, updates, params), state

    return _stateless(update_fn)
