"""The one solver loop: iterate a step function under ``lax.while_loop``.

Every solver in this package (``minimize``'s methods, optax transformations run as
first-order methods, ``least_squares``) is a *step function*
``(x, f, g, aux) -> (x_new, f_new, g_new, aux_new, ok, nfev, ngev)`` run by :func:`run`, which
stops at ``||g||_2 <= tol``, after ``maxiter`` steps, or when a step fails (no
acceptable step, or a non-finite value/gradient/parameter). It keeps the best point
seen, so a solve that does not converge returns its lowest-objective iterate and
never non-finite parameters. It sums the evaluations each step reports (``nfev``
objective values, ``ngev`` gradients, line-search trials included) into the result.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxopt_dl._core import global_norm, tree_all_finite

__all__ = ["OptimizeResult", "run"]

StepFn = Callable[
    [Any, jax.Array, Any, Any],
    tuple[Any, jax.Array, Any, Any, jax.Array, jax.Array, jax.Array],
]


class OptimizeResult(NamedTuple):
    """The result of a solve (a pytree: it jits and vmaps).

    Attributes:
      x: the solution (the last iterate when converged, else the best one seen),
        with the structure of ``x0``.
      fun: the objective at ``x`` (for ``least_squares``: ``0.5 * ||r(x)||^2``).
      nit: the number of steps taken.
      converged: ``grad_norm <= tol``.
      grad_norm: the 2-norm of the gradient at ``x``.
      nfev: the number of objective evaluations, the one at ``x0`` and every
        line-search trial included (for ``least_squares``: residual evaluations).
      ngev: the number of gradient evaluations, the one at ``x0`` included (for
        ``least_squares``: Jacobian evaluations).
    """

    x: Any
    fun: jax.Array
    nit: jax.Array
    converged: jax.Array
    grad_norm: jax.Array
    nfev: jax.Array
    ngev: jax.Array


class _Carry(NamedTuple):
    x: Any
    f: jax.Array
    g: Any
    aux: Any
    nit: jax.Array
    failed: jax.Array
    best_x: Any
    best_f: jax.Array
    best_g: Any
    nfev: jax.Array
    ngev: jax.Array


def _select(pred: jax.Array, a: Any, b: Any) -> Any:
    return jax.tree.map(lambda u, v: jnp.where(pred, u, v), a, b)


def run(
    step: StepFn,
    x0: Any,
    f0: jax.Array,
    g0: Any,
    aux0: Any,
    maxiter: jax.typing.ArrayLike,
    tol: jax.typing.ArrayLike,
) -> OptimizeResult:
    """Run ``step`` from ``x0`` until ``||g||_2 <= tol``, ``maxiter`` steps, or a failed step.

    Args:
      step: ``(x, f, g, aux) -> (x_new, f_new, g_new, aux_new, ok, nfev, ngev)``;
        ``ok=False`` means no acceptable step was found (the loop stops); ``nfev`` and
        ``ngev`` are the objective and gradient evaluations the step made.
      x0: the starting point (any pytree).
      f0: the objective at ``x0`` (counted as one evaluation).
      g0: the gradient at ``x0`` (counted as one evaluation).
      aux0: the step function's initial state.
      maxiter: the most steps (may be traced).
      tol: the gradient-norm tolerance (may be traced).

    Returns:
      An :class:`OptimizeResult`.
    """

    def cond(c: _Carry) -> jax.Array:
        return (c.nit < maxiter) & (global_norm(c.g) > tol) & ~c.failed

    def body(c: _Carry) -> _Carry:
        x, f, g, aux, ok, nfev, ngev = step(c.x, c.f, c.g, c.aux)
        ok = ok & jnp.isfinite(f) & tree_all_finite(g) & tree_all_finite(x)
        x, f, g = _select(ok, (x, f, g), (c.x, c.f, c.g))
        aux = _select(ok, aux, c.aux)
        better = ok & (f < c.best_f)
        best_x, best_f, best_g = _select(better, (x, f, g), (c.best_x, c.best_f, c.best_g))
        nit = c.nit + ok.astype(c.nit.dtype)
        return _Carry(x, f, g, aux, nit, ~ok, best_x, best_f, best_g,
                      c.nfev + nfev, c.ngev + ngev)  # fmt: skip

    one = jnp.ones([], jnp.int32)
    init = _Carry(x0, f0, g0, aux0, jnp.zeros([], jnp.int32), jnp.asarray(False), x0, f0, g0,
                  one, one)  # fmt: skip
    c = jax.lax.while_loop(cond, body, init)
    last_converged = global_norm(c.g) <= tol
    x, f, g = _select(last_converged, (c.x, c.f, c.g), (c.best_x, c.best_f, c.best_g))
    grad_norm = global_norm(g).astype(jnp.result_type(f))
    return OptimizeResult(x=x, fun=f, nit=c.nit, converged=grad_norm <= tol, grad_norm=grad_norm,
                          nfev=c.nfev, ngev=c.ngev)  # fmt: skip
