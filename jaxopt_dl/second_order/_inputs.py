"""Input checks and compilation caching shared by ``minimize`` and ``least_squares``."""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_dl._core import check_int, check_nonnegative, check_positive


def check_stopping(maxiter: Any, tol: Any, xtol: Any, ftol: Any) -> None:
    """``maxiter`` a positive integer, ``tol`` positive, ``xtol``/``ftol`` non-negative."""
    check_int("maxiter", maxiter, 1)
    check_positive("tol", tol)
    check_nonnegative("xtol", xtol)
    check_nonnegative("ftol", ftol)


def as_float_tree(x0: Any) -> Any:
    """``x0`` with every leaf an inexact array (integers become the default float dtype)."""

    def leaf(a):
        a = jnp.asarray(a)
        return a if jnp.issubdtype(a.dtype, jnp.inexact) else a.astype(float)

    return jax.tree.map(leaf, x0)


def check_x0(x0: Any) -> None:
    """Raise ``ValueError`` naming the first leaf of a concrete ``x0`` with NaN/Inf values."""
    flat, _ = jax.tree_util.tree_flatten_with_path(x0)
    if not flat:
        raise ValueError("x0 must contain at least one array leaf, got an empty tree")
    for path, leaf in flat:
        if isinstance(leaf, jax.core.Tracer):
            continue
        if not np.all(np.isfinite(np.asarray(leaf))):
            where = jax.tree_util.keystr(path) or "<root>"
            raise ValueError(f"x0 contains NaN or Inf values (at x0{where})")


def output_shape(fn: Callable, x0: Any, name: str) -> tuple[int, ...]:
    """The shape of ``fn(x0)`` found with ``jax.eval_shape`` (no FLOPs spent)."""
    out = jax.eval_shape(fn, x0)
    if not hasattr(out, "shape"):
        raise ValueError(f"{name} must return a single array, got {jax.tree.structure(out)}")
    return tuple(out.shape)


def cached_jit(impl: Callable, static: tuple[str, ...]) -> Callable:
    """``jax.jit(impl)`` with ``static`` keyword arguments, falling back to a plain call.

    The solvers' callables (the objective, an optax transformation) are static, so
    repeated solves of the same function reuse one compilation; an unhashable callable
    is run without the cache (it is still compiled by ``lax.while_loop``).
    """
    jitted = jax.jit(impl, static_argnames=static)

    @functools.wraps(impl)
    def call(*args, **kwargs):
        try:
            hash(tuple(kwargs[name] for name in static))
        except TypeError:
            return impl(*args, **kwargs)
        return jitted(*args, **kwargs)

    return call
