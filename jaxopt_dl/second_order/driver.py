"""The one solver loop: iterate a step function under ``lax.while_loop``.

Every solver in this package (``minimize``'s methods, optax transformations run as
first-order methods, ``least_squares``) is a *step function*
``(x, f, g, aux) -> (x_new, f_new, g_new, aux_new, ok, nfev, ngev)`` run by :func:`run`.
The loop stops with a :class:`Status`: converged (``||g||_2 <= tol``, or a step below
the ``xtol``/``ftol`` tolerances), max steps reached, search failed (the step function
found no acceptable step) or non-finite (a value, gradient or parameter that is NaN/Inf).
It keeps the best point seen, so a solve that does not converge returns its
lowest-objective iterate and never non-finite parameters. It sums the evaluations each
step reports (``nfev`` objective values, ``ngev`` gradients, line-search trials
included) into the result.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxopt_dl._core import global_norm, tree_all_finite

__all__ = ["OptimizeResult", "Status", "run", "step_converged"]

StepFn = Callable[
    [Any, jax.Array, Any, Any],
    tuple[Any, jax.Array, Any, Any, jax.Array, jax.Array, jax.Array],
]


class Status(enum.IntEnum):
    """Why a solve stopped: the values of ``OptimizeResult.status`` (an ``int32`` array).

    Attributes:
      CONVERGED: ``||g||_2 <= tol``, or the last step met the ``xtol`` or ``ftol`` test.
      MAX_STEPS_REACHED: ``maxiter`` steps were taken without meeting a tolerance.
      SEARCH_FAILED: the line search or trust region found no acceptable step (every
        trial rejected, including trials whose values were all non-finite).
      NONFINITE: the objective or gradient at ``x0`` is NaN/Inf, or a step the search
        accepted gave a NaN/Inf value, gradient or parameter (a full step or an optax
        update, which have no search to reject it).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxopt_dl.second_order import Status, minimize
      >>> Status(int(minimize(lambda x: jnp.sum(x**2), jnp.ones(2)).status)).name
      'CONVERGED'
    """

    CONVERGED = 0
    MAX_STEPS_REACHED = 1
    SEARCH_FAILED = 2
    NONFINITE = 3


_RUNNING = -1


class OptimizeResult(NamedTuple):
    """The result of a solve (a pytree: it jits and vmaps).

    Attributes:
      x: the solution (the last iterate when converged, else the best one seen),
        with the structure of ``x0``.
      fun: the objective at ``x`` (for ``least_squares``: ``0.5 * ||r(x)||^2``).
      nit: the number of steps taken.
      converged: ``status == Status.CONVERGED``.
      grad_norm: the 2-norm of the gradient at ``x``.
      nfev: the number of objective evaluations, the one at ``x0`` and every
        line-search trial included (for ``least_squares``: residual evaluations).
      ngev: the number of gradient evaluations, the one at ``x0`` included (for
        ``least_squares``: Jacobian evaluations).
      status: why the solve stopped, a :class:`Status` value as an ``int32`` array
        (``Status(int(result.status)).name`` reads it; :attr:`message` too).
    """

    x: Any
    fun: jax.Array
    nit: jax.Array
    converged: jax.Array
    grad_norm: jax.Array
    nfev: jax.Array
    ngev: jax.Array
    status: jax.Array

    @property
    def message(self) -> str:
        """The status's name in lower case (``"converged"``, ``"max_steps_reached"``,
        ...) of an unbatched result outside ``jit``."""
        return Status(int(self.status)).name.lower()


class _Carry(NamedTuple):
    x: Any
    f: jax.Array
    g: Any
    aux: Any
    nit: jax.Array
    status: jax.Array
    best_x: Any
    best_f: jax.Array
    best_g: Any
    nfev: jax.Array
    ngev: jax.Array


def _select(pred: jax.Array, a: Any, b: Any) -> Any:
    return jax.tree.map(lambda u, v: jnp.where(pred, u, v), a, b)


def _tree_sub(a: Any, b: Any) -> Any:
    return jax.tree.map(jnp.subtract, a, b)


def step_converged(
    x: Any,
    f: jax.Array,
    x_new: Any,
    f_new: jax.Array,
    g_new: Any,
    tol: jax.typing.ArrayLike,
    xtol: jax.typing.ArrayLike,
    ftol: jax.typing.ArrayLike,
) -> jax.Array:
    """The stopping tests after a step from ``(x, f)`` to ``(x_new, f_new, g_new)``.

    .. math::
        \\|g_{new}\\|_2 \\le \\text{tol} \\;\\lor\\;
        \\|x_{new} - x\\|_2 < \\text{xtol}\\,(\\text{xtol} + \\|x_{new}\\|_2) \\;\\lor\\;
        |f - f_{new}| < \\text{ftol}\\,|f|

    (scipy's ``least_squares`` forms of ``gtol``, ``xtol`` and ``ftol``, the first
    absolute); ``xtol = 0`` or ``ftol = 0`` turns its test off.

    Args:
      x: the point before the step (any pytree).
      f: the objective at ``x``.
      x_new: the point after the step.
      f_new: the objective at ``x_new``.
      g_new: the gradient at ``x_new``.
      tol: the gradient-norm tolerance.
      xtol: the relative tolerance on the step's length.
      ftol: the relative tolerance on the objective's change.

    Returns:
      A boolean scalar.
    """
    small_g = global_norm(g_new) <= tol
    small_x = global_norm(_tree_sub(x_new, x)) < xtol * (xtol + global_norm(x_new))
    small_f = jnp.abs(f - f_new) < ftol * jnp.abs(f)
    return small_g | small_x | small_f


def run(
    step: StepFn,
    x0: Any,
    f0: jax.Array,
    g0: Any,
    aux0: Any,
    maxiter: jax.typing.ArrayLike,
    tol: jax.typing.ArrayLike,
    xtol: jax.typing.ArrayLike = 0.0,
    ftol: jax.typing.ArrayLike = 0.0,
) -> OptimizeResult:
    """Run ``step`` from ``x0`` until a tolerance is met, ``maxiter`` steps, or a failed step.

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
      xtol: the relative step tolerance of :func:`step_converged` (0: off; may be traced).
      ftol: the relative objective-change tolerance (0: off; may be traced).

    Returns:
      An :class:`OptimizeResult`.
    """
    code = lambda s: jnp.asarray(s, jnp.int32)  # noqa: E731

    def cond(c: _Carry) -> jax.Array:
        return (c.status == _RUNNING) & (c.nit < maxiter)

    def body(c: _Carry) -> _Carry:
        x, f, g, aux, ok, nfev, ngev = step(c.x, c.f, c.g, c.aux)
        finite = jnp.isfinite(f) & tree_all_finite(g) & tree_all_finite(x)
        accepted = ok & finite
        done = step_converged(c.x, c.f, x, f, g, tol, xtol, ftol)
        new_status = jnp.where(
            ~ok,
            code(Status.SEARCH_FAILED),
            jnp.where(
                ~finite,
                code(Status.NONFINITE),
                jnp.where(done, code(Status.CONVERGED), code(_RUNNING)),
            ),
        )
        x, f, g = _select(accepted, (x, f, g), (c.x, c.f, c.g))
        aux = _select(accepted, aux, c.aux)
        better = accepted & (f < c.best_f)
        best_x, best_f, best_g = _select(better, (x, f, g), (c.best_x, c.best_f, c.best_g))
        nit = c.nit + accepted.astype(c.nit.dtype)
        return _Carry(x, f, g, aux, nit, new_status, best_x, best_f, best_g,
                      c.nfev + nfev, c.ngev + ngev)  # fmt: skip

    one = jnp.ones([], jnp.int32)
    finite0 = jnp.isfinite(f0) & tree_all_finite(g0)
    status0 = jnp.where(
        ~finite0,
        code(Status.NONFINITE),
        jnp.where(global_norm(g0) <= tol, code(Status.CONVERGED), code(_RUNNING)),
    )
    init = _Carry(x0, f0, g0, aux0, jnp.zeros([], jnp.int32), status0, x0, f0, g0,
                  one, one)  # fmt: skip
    c = jax.lax.while_loop(cond, body, init)
    final = jnp.where(c.status == _RUNNING, code(Status.MAX_STEPS_REACHED), c.status)
    converged = final == Status.CONVERGED
    x, f, g = _select(converged, (c.x, c.f, c.g), (c.best_x, c.best_f, c.best_g))
    grad_norm = global_norm(g).astype(jnp.result_type(f))
    return OptimizeResult(x=x, fun=f, nit=c.nit, converged=converged, grad_norm=grad_norm,
                          nfev=c.nfev, ngev=c.ngev, status=final)  # fmt: skip
