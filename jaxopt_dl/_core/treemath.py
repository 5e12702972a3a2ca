"""The tree math every transform uses, each formula written once: the saturating step
counter, moments, accurate bias correction, norms, casts."""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_dl._core.types import ScalarOrSchedule

__all__ = [
    "zero_count",
    "safe_increment",
    "tree_map",
    "tree_zeros_like",
    "tree_second_moment_like",
    "tree_cast",
    "tree_cast_like",
    "tree_scale",
    "tree_add_scaled",
    "tree_ema",
    "tree_ema_sq_norm",
    "widen_to",
    "abs_sq",
    "widen",
    "bias_correction_factor",
    "tree_bias_correction",
    "tree_sum_sq",
    "global_norm",
    "tree_all_finite",
    "evaluate",
]


# --------------------------------------------------------------------------
# Step counter
# --------------------------------------------------------------------------


def zero_count() -> jax.Array:
    """The initial value of every step counter: an int32 zero."""
    return jnp.zeros([], jnp.int32)


def safe_increment(count: jax.typing.ArrayLike) -> jax.Array:
    """``count + 1`` that saturates at the dtype's maximum instead of wrapping.

    Args:
      count: an integer (signed or unsigned) or real floating-point counter.

    Returns:
      ``count + 1``, or ``count`` when it already holds the dtype's maximum.

    Raises:
      ValueError: for a complex or boolean ``count``, which has no maximum.

    Example:
      >>> import jax.numpy as jnp
      >>> int(safe_increment(jnp.asarray(2**31 - 1, jnp.int32)))
      2147483647
    """
    count = jnp.asarray(count)
    if jnp.issubdtype(count.dtype, jnp.integer):
        max_value = jnp.iinfo(count.dtype).max
    elif jnp.issubdtype(count.dtype, jnp.floating):
        max_value = jnp.finfo(count.dtype).max
    else:
        raise ValueError(
            f"safe_increment needs an integer or real floating-point count, got dtype "
            f"{count.dtype} (count={count!r})"
        )
    top = jnp.asarray(max_value, count.dtype)
    return jnp.where(count < top, count + jnp.ones([], count.dtype), top)


# --------------------------------------------------------------------------
# Tree math: each formula written once
# --------------------------------------------------------------------------


def _map(fn: Callable, *trees: Any) -> Any:
    return jax.tree.map(
        lambda x, *rest: None if x is None else fn(x, *rest), *trees, is_leaf=lambda x: x is None
    )


tree_map = _map


def tree_zeros_like(tree: Any, dtype: Any = None) -> Any:
    """Zeros with each leaf's shape (and ``dtype`` when given, else the leaf's dtype)."""
    return _map(lambda x: jnp.zeros_like(x, dtype=dtype), tree)


def tree_second_moment_like(tree: Any, value: float = 0.0, dtype: Any = None) -> Any:
    """Initial second-moment accumulators: ``value`` with each leaf's shape.

    The dtype is ``dtype`` when given, else the leaf's -- except float16 leaves, whose
    squared gradients underflow fp16's range (g^2 < 6e-8 for |g| < 2.4e-4) and turn
    ``m / sqrt(v)`` into inf; their accumulators are float32 (optax keeps fp16 and
    returns NaN there).

    ``full_like`` (not ``full(x.shape)``) keeps each leaf's sharding, so under a mesh
    with explicit axes ``jax.jit(tx.init)`` shards the accumulators like their params.
    """

    def make(x):
        x_dtype = jnp.asarray(x).dtype
        leaf_dtype = dtype or (jnp.float32 if x_dtype == jnp.float16 else x_dtype)
        return jnp.full_like(x, value, dtype=leaf_dtype)

    return _map(make, tree)


def tree_cast(tree: Any, dtype: Any) -> Any:
    """Cast every leaf to ``dtype`` (no-op when ``dtype`` is None)."""
    if dtype is None:
        return tree
    return _map(lambda x: x.astype(dtype), tree)


def tree_cast_like(tree: Any, like: Any) -> Any:
    """Cast every leaf of ``tree`` to the dtype of the matching floating leaf of ``like``.

    Leaves matched with integer ones (Python ints in a gradient tree) stay as they are.
    """

    def cast(x, y):
        dtype = jnp.asarray(y).dtype
        return x.astype(dtype) if jnp.issubdtype(dtype, jnp.inexact) else x

    return _map(cast, tree, like)


def tree_scale(scalar: jax.typing.ArrayLike, tree: Any) -> Any:
    """``scalar * tree``, keeping each leaf's dtype."""
    return _map(lambda x: (scalar * x).astype(x.dtype), tree)


def tree_add_scaled(a: Any, scalar: jax.typing.ArrayLike, b: Any) -> Any:
    """Leafwise ``a + scalar * b``."""
    return _map(lambda x, y: x + scalar * y, a, b)


def tree_ema(updates: Any, moment: Any, decay: jax.typing.ArrayLike, order: int = 1) -> Any:
    """Exponential moving average of the ``order``-th power of ``updates``.

    .. math:: m \\leftarrow (1 - \\beta) g^{order} + \\beta m
    """
    return _map(lambda g, m: (1 - decay) * (widen_to(g, m) ** order) + decay * m, updates, moment)


def tree_ema_sq_norm(updates: Any, moment: Any, decay: jax.typing.ArrayLike) -> Any:
    """EMA of ``|g|^2`` (equal to ``g^2`` for real gradients, correct for complex)."""
    return _map(lambda g, m: (1 - decay) * abs_sq(widen_to(g, m)) + decay * m, updates, moment)


def widen_to(g: jax.Array, m: jax.Array) -> jax.Array:
    """Square the gradient in the accumulator's precision when that is wider (fp16 grads)."""
    g = jnp.asarray(g)
    return g.astype(jnp.promote_types(g.dtype, jnp.asarray(m).dtype))


def abs_sq(x: jax.Array) -> jax.Array:
    return (x.conj() * x).real if jnp.iscomplexobj(x) else x * x


def widen(x: jax.Array) -> jax.Array:
    """``x`` in at least float32, for norms of bf16/fp16 leaves.

    Squares of float16 values above 256 overflow and bf16 sums lose digits, so every
    norm is accumulated in ``promote_types(x.dtype, float32)``.
    """
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def bias_correction_factor(decay: jax.typing.ArrayLike, count: jax.typing.ArrayLike) -> jax.Array:
    """``1 - decay**count`` without cancellation: ``-expm1(count * log(decay))``.

    ``1 - decay**count`` in float32 loses the digits of ``decay**count`` near 1 (off by
    1.4e-3 relative at ``decay = 0.99999``, ``count = 1``). Here the logarithm of a
    Python/NumPy ``decay`` is taken in float64 (``log1p(decay - 1)``, exact for the
    number given) and the rest in the default float precision, so the factor is
    accurate to a few float32 ulps for every decay and count. An array (or traced)
    ``decay`` takes the same form in its own precision.

    Args:
      decay: the EMA decay, in [0, 1).
      count: the step count (>= 1).

    Returns:
      A scalar in the default float dtype (float32; float64 under ``jax_enable_x64``).
    """
    dtype = jnp.result_type(float)
    if isinstance(decay, (int, float, np.integer, np.floating)) and not isinstance(decay, bool):
        log_decay = -math.inf if decay == 0 else math.log1p(float(decay) - 1.0)
        log_decay = jnp.asarray(log_decay, dtype)
    else:
        decay = jnp.asarray(decay)
        dtype = jnp.promote_types(dtype, decay.dtype)
        log_decay = jnp.log1p(decay.astype(dtype) - 1)
    return -jnp.expm1(jnp.asarray(count).astype(dtype) * log_decay)


def tree_bias_correction(moment: Any, decay: jax.typing.ArrayLike, count: jax.Array) -> Any:
    """Divide an EMA by ``1 - decay**count`` (Kingma & Ba 2014, Alg. 1).

    The factor is :func:`bias_correction_factor` (accurate, in at least float32), cast
    to each leaf's dtype only for the division, so bf16 moments do not round it to zero.

    Args:
      moment: a tree of moments (or a single array).
      decay: the EMA decay.
      count: the step count (>= 1).
    """
    correction = bias_correction_factor(decay, count)

    def divide(t):
        t = jnp.asarray(t)
        return t / (
            correction.astype(t.dtype) if jnp.issubdtype(t.dtype, jnp.inexact) else correction
        )

    return _map(divide, moment)


def tree_sum_sq(tree: Any) -> jax.Array:
    """Sum of squares of every entry of the tree, accumulated in at least float32."""
    leaves = [jnp.sum(abs_sq(widen(x))) for x in jax.tree.leaves(tree)]
    return sum(leaves, jnp.zeros([], jnp.float32))


def global_norm(updates: Any) -> jax.Array:
    """The L2 norm of a whole tree: ``sqrt(sum_i ||g_i||^2)``.

    Args:
      updates: a tree of arrays.
    """
    return jnp.sqrt(tree_sum_sq(updates))


def tree_all_finite(tree: Any) -> jax.Array:
    """One boolean: every entry of every leaf is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


# --------------------------------------------------------------------------
# Learning rates and schedules
# --------------------------------------------------------------------------


def evaluate(value: ScalarOrSchedule, count: jax.Array) -> jax.typing.ArrayLike:
    """A hyperparameter's value at step ``count``: call it if it is a schedule."""
    return value(count) if callable(value) else value
