"""Step-size searches along a descent direction: Armijo backtracking and strong-Wolfe zoom.

Both searches work on any pytree ``x`` (the solvers pass flat vectors), run as one
bounded ``lax.while_loop`` (jittable, vmappable) and return a :class:`LineSearchResult`
holding the accepted point's value and gradient, so the caller never re-evaluates it.
A trial point whose value or gradient is not finite is treated as "too far" and the
step shrinks; when no acceptable step is found, ``success`` is False and the result
holds the starting point (step 0).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxopt_dl._core import tree_add_scaled, tree_all_finite

ValueAndGrad = Callable[[Any], tuple[jax.Array, Any]]

__all__ = ["LineSearchResult", "backtracking", "zoom", "full_step", "tree_vdot"]


class LineSearchResult(NamedTuple):
    """The outcome of a line search.

    Attributes:
      step: the accepted step length ``t`` (0 when the search failed).
      x: the accepted point ``x + t d``.
      fun: ``f`` at the accepted point.
      grad: the gradient at the accepted point.
      success: whether the search met its acceptance conditions.
      nfev: the number of value-and-gradient evaluations used.
    """

    step: jax.Array
    x: Any
    fun: jax.Array
    grad: Any
    success: jax.Array
    nfev: jax.Array


def tree_vdot(a: Any, b: Any) -> jax.Array:
    """``sum_i <a_i, b_i>`` over the leaves of two trees of the same structure."""
    parts = [jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
    return sum(parts[1:], parts[0])


def _finite(value: jax.Array, grad: Any) -> jax.Array:
    return jnp.isfinite(value) & tree_all_finite(grad)


def _noise(fun: jax.Array) -> jax.Array:
    """The rounding noise of an objective value: ``100 eps |f|``."""
    return 100 * jnp.finfo(jnp.result_type(fun)).eps * jnp.abs(fun)


def _approx_decrease(f_t, d_t, fun, slope, c1) -> jax.Array:
    """Hager & Zhang's approximate Armijo test, used where ``f`` differences are noise.

    Near a minimizer, ``f(x + t d) - f(x)`` drowns in rounding error long before the
    gradient does; accept ``f(x + t d) <= f(x) + noise`` when the slope also shows
    no overshoot, ``grad(x + t d).d <= (2 c1 - 1) grad(x).d``.
    """
    return (f_t <= fun + _noise(fun)) & (d_t <= (2 * c1 - 1) * slope)


def backtracking(
    value_and_grad: ValueAndGrad,
    x: Any,
    fun: jax.Array,
    grad: Any,
    direction: Any,
    init_step: jax.typing.ArrayLike = 1.0,
    c1: float = 1e-4,
    shrink: float = 0.5,
    maxiter: int = 30,
) -> LineSearchResult:
    """Backtracking line search for the Armijo (sufficient decrease) condition.

    Starting from ``t = init_step``, multiply ``t`` by ``shrink`` until

    .. math:: f(x + t d) \\le f(x) + c_1 t \\nabla f(x)^\\top d

    and the trial value and gradient are finite (Nocedal & Wright, Alg. 3.1). Where
    the decrease is below ``f``'s rounding noise, Hager & Zhang's approximate test
    (value within noise, slope ``<= (2 c1 - 1) grad.d``) also accepts.

    Args:
      value_and_grad: ``x -> (f(x), grad f(x))``.
      x: the current point (any pytree).
      fun: ``f(x)``.
      grad: ``grad f(x)``.
      direction: the search direction ``d`` (a descent direction: ``grad . d < 0``).
      init_step: the first trial step.
      c1: the sufficient-decrease constant, in (0, 1).
      shrink: the factor applied to ``t`` after each rejected trial, in (0, 1).
      maxiter: the most trials.

    Returns:
      A :class:`LineSearchResult`; ``success`` is False (and ``step`` 0) when no trial
      within ``maxiter`` was accepted.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> f = lambda x: jnp.sum(x**2)
      >>> x = jnp.array([1.0, 2.0]); v, g = jax.value_and_grad(f)(x)
      >>> res = backtracking(jax.value_and_grad(f), x, v, g, -g)
      >>> float(res.step)
      0.5

    References:
      Nocedal & Wright, Numerical Optimization, 2nd ed., Alg. 3.1 (2006);
      Hager & Zhang, A new conjugate gradient method with guaranteed descent and an
      efficient line search, SIAM J. Optim. 16 (2005).
    """
    slope = tree_vdot(grad, direction)
    dtype = jnp.result_type(fun)

    def trial(t):
        x_t = tree_add_scaled(x, t, direction)
        f_t, g_t = value_and_grad(x_t)
        decrease = (f_t <= fun + c1 * t * slope) | _approx_decrease(
            f_t, tree_vdot(g_t, direction), fun, slope, c1
        )
        ok = _finite(f_t, g_t) & decrease
        return x_t, f_t, g_t, ok

    def cond(carry):
        i, _, _, _, _, ok = carry
        return (i < maxiter) & ~ok

    def body(carry):
        i, t, _, _, _, _ = carry
        t = jnp.where(i == 0, t, t * shrink)
        x_t, f_t, g_t, ok = trial(t)
        return i + 1, t, x_t, f_t, g_t, ok

    t0 = jnp.asarray(init_step, dtype)
    init = (jnp.zeros([], jnp.int32), t0, x, fun, grad, jnp.asarray(False))
    n, t, x_t, f_t, g_t, ok = jax.lax.while_loop(cond, body, init)
    return _result(ok, t, x_t, f_t, g_t, x, fun, grad, n)


def _result(ok, t, x_t, f_t, g_t, x, fun, grad, nfev) -> LineSearchResult:
    pick = lambda a, b: jnp.where(ok, a, b)  # noqa: E731
    return LineSearchResult(
        step=pick(t, jnp.zeros_like(t)),
        x=jax.tree.map(pick, x_t, x),
        fun=pick(f_t, fun),
        grad=jax.tree.map(pick, g_t, grad),
        success=ok,
        nfev=nfev,
    )


def full_step(
    value_and_grad: ValueAndGrad, x: Any, fun: jax.Array, grad: Any, direction: Any, **unused: Any
) -> LineSearchResult:
    """No search: the full step ``x + d`` (``t = 1``), accepted whenever it is finite.

    This is the pure form of Newton's and Gauss-Newton's methods; the step may
    increase ``f``. Extra keyword arguments (``init_step``, ...) are ignored.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> f = lambda x: jnp.sum(x**2); x = jnp.ones(2); v, g = jax.value_and_grad(f)(x)
      >>> float(full_step(jax.value_and_grad(f), x, v, g, -g).fun)
      2.0
    """
    del unused
    x_t = tree_add_scaled(x, 1.0, direction)
    f_t, g_t = value_and_grad(x_t)
    t = jnp.ones([], jnp.result_type(fun))
    return _result(_finite(f_t, g_t), t, x_t, f_t, g_t, x, fun, grad, jnp.ones([], jnp.int32))


class _ZoomState(NamedTuple):
    i: jax.Array
    done: jax.Array
    zooming: jax.Array
    t: jax.Array  # the next trial step
    t_lo: jax.Array
    f_lo: jax.Array
    d_lo: jax.Array
    t_hi: jax.Array
    f_hi: jax.Array
    d_hi: jax.Array
    x_lo: Any
    g_lo: Any


def _cubic_min(t_lo, f_lo, d_lo, t_hi, f_hi, d_hi):
    """The minimizer of the cubic interpolating (f, f') at both ends (N&W eq. 3.59)."""
    d1 = d_lo + d_hi - 3 * (f_lo - f_hi) / (t_lo - t_hi)
    d2 = jnp.sign(t_hi - t_lo) * jnp.sqrt(jnp.maximum(d1**2 - d_lo * d_hi, 0.0))
    return t_hi - (t_hi - t_lo) * (d_hi + d2 - d1) / (d_hi - d_lo + 2 * d2)


def zoom(
    value_and_grad: ValueAndGrad,
    x: Any,
    fun: jax.Array,
    grad: Any,
    direction: Any,
    init_step: jax.typing.ArrayLike = 1.0,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_step: float = 1e10,
    maxiter: int = 30,
) -> LineSearchResult:
    """Line search for the strong Wolfe conditions (bracketing, then zoom).

    Accepts the first trial ``t`` with

    .. math::
        f(x + t d) \\le f(x) + c_1 t \\nabla f(x)^\\top d, \\qquad
        |\\nabla f(x + t d)^\\top d| \\le c_2 |\\nabla f(x)^\\top d|.

    Phase 1 (N&W Alg. 3.5) doubles ``t`` until an interval containing acceptable
    steps is bracketed; phase 2 (Alg. 3.6) shrinks the bracket, choosing each trial as
    the minimizer of the cubic through both ends, safeguarded to the middle 80% of the
    bracket (bisection otherwise). Hager & Zhang's approximate Armijo test stands in
    for the value comparisons where they are below rounding noise. Both phases share one ``while_loop``, one
    evaluation per iteration. When the budget runs out, the lowest point that met
    the sufficient-decrease condition (if any) is returned with ``success=True``
    (it may miss the curvature condition; BFGS then skips its update).

    Args:
      value_and_grad: ``x -> (f(x), grad f(x))``.
      x: the current point (any pytree).
      fun: ``f(x)``.
      grad: ``grad f(x)``.
      direction: a descent direction ``d``.
      init_step: the first trial step.
      c1: sufficient-decrease constant, ``0 < c1 < c2 < 1``.
      c2: curvature constant (0.9 for quasi-Newton methods, 0.1 for nonlinear CG).
      max_step: the largest step tried in the bracketing phase.
      maxiter: the most evaluations.

    Returns:
      A :class:`LineSearchResult`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> f = lambda x: jnp.sum((x - 3.0) ** 2)
      >>> x = jnp.zeros(2); v, g = jax.value_and_grad(f)(x)
      >>> res = zoom(jax.value_and_grad(f), x, v, g, -g, init_step=0.1, c2=0.1)
      >>> bool(res.success), round(float(res.step), 3)
      (True, 0.5)

    References:
      Nocedal & Wright, Numerical Optimization, 2nd ed., Alg. 3.5 and 3.6 (2006);
      Hager & Zhang, SIAM J. Optim. 16 (2005) (approximate Wolfe conditions).
    """
    slope = tree_vdot(grad, direction)
    dtype = jnp.result_type(fun)
    zero = jnp.zeros([], dtype)
    t0 = jnp.minimum(jnp.asarray(init_step, dtype), max_step)

    def body(s: _ZoomState) -> _ZoomState:
        t = s.t
        x_t = tree_add_scaled(x, t, direction)
        f_t, g_t = value_and_grad(x_t)
        d_t = tree_vdot(g_t, direction)
        finite = _finite(f_t, g_t)
        # f_lo is f(x) before the first accepted trial, so the comparison with the
        # previous/low point (N&W Alg. 3.5 line 5, Alg. 3.6 line 4) covers both phases.
        approx = _approx_decrease(f_t, d_t, fun, slope, c1)
        armijo_fails = ~finite | (((f_t > fun + c1 * t * slope) | (f_t >= s.f_lo)) & ~approx)
        curvature_ok = jnp.abs(d_t) <= -c2 * slope
        accept = ~armijo_fails & curvature_ok

        # Bracketing phase: new bracket (lo, hi) = (prev, t) or (t, prev).
        to_hi = armijo_fails
        flip = ~armijo_fails & ~curvature_ok & (d_t >= 0)
        # Zoom phase: lo moves to t; hi moves to old lo when the slope points back.
        swap_hi = ~armijo_fails & ~curvature_ok & (d_t * (s.t_hi - s.t_lo) >= 0)

        zooming_now = s.zooming | to_hi | flip
        move_lo = ~armijo_fails & ~accept
        new_hi_from_lo = jnp.where(s.zooming, swap_hi, flip)

        t_hi = jnp.where(to_hi, t, jnp.where(new_hi_from_lo, s.t_lo, s.t_hi))
        f_hi = jnp.where(to_hi, f_t, jnp.where(new_hi_from_lo, s.f_lo, s.f_hi))
        d_hi = jnp.where(to_hi, d_t, jnp.where(new_hi_from_lo, s.d_lo, s.d_hi))
        pick_lo = lambda new, old: jnp.where(move_lo | accept, new, old)  # noqa: E731
        t_lo, f_lo, d_lo = pick_lo(t, s.t_lo), pick_lo(f_t, s.f_lo), pick_lo(d_t, s.d_lo)
        x_lo = jax.tree.map(pick_lo, x_t, s.x_lo)
        g_lo = jax.tree.map(pick_lo, g_t, s.g_lo)

        lo_, hi_ = jnp.minimum(t_lo, t_hi), jnp.maximum(t_lo, t_hi)
        cubic = _cubic_min(t_lo, f_lo, d_lo, t_hi, f_hi, d_hi)
        margin = 0.1 * (hi_ - lo_)
        safe = jnp.isfinite(cubic) & (cubic >= lo_ + margin) & (cubic <= hi_ - margin)
        t_zoom = jnp.where(safe, cubic, 0.5 * (t_lo + t_hi))
        t_grow = jnp.minimum(2.0 * t, max_step)
        at_max = ~zooming_now & (t >= max_step)
        return _ZoomState(
            i=s.i + 1,
            done=accept | at_max,
            zooming=zooming_now,
            t=jnp.where(zooming_now, t_zoom, t_grow),
            t_lo=t_lo, f_lo=f_lo, d_lo=d_lo,
            t_hi=t_hi, f_hi=f_hi, d_hi=d_hi,
            x_lo=x_lo, g_lo=g_lo,
        )  # fmt: skip

    init = _ZoomState(
        i=jnp.zeros([], jnp.int32), done=jnp.asarray(False), zooming=jnp.asarray(False),
        t=t0, t_lo=zero, f_lo=fun, d_lo=slope, t_hi=zero, f_hi=fun, d_hi=slope,
        x_lo=x, g_lo=grad,
    )  # fmt: skip
    s = jax.lax.while_loop(lambda s: (s.i < maxiter) & ~s.done, body, init)
    ok = s.t_lo > 0
    return _result(ok, s.t_lo, s.x_lo, s.f_lo, s.g_lo, x, fun, grad, s.i)
