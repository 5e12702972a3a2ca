"""Nonlinear least squares: Gauss-Newton and Levenberg-Marquardt on the solver driver.

Minimizes ``F(x) = 0.5 * ||r(x)||^2`` (scipy's ``cost``) with ``g = J^T r``.
Levenberg-Marquardt is the damped Newton step on ``J^T J``
(:func:`~jaxopt_dl.second_order.directions.damped_newton_step`, the descent) searched
by a trust region (:func:`~jaxopt_dl.second_order.trustregion.trust_region`, which
accepts or rejects each step and adapts the damping).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxopt_dl._core import check_bool, check_choice, check_int, check_positive
from jaxopt_dl.second_order._inputs import (
    as_float_tree,
    cached_jit,
    check_stopping,
    check_x0,
    output_shape,
)
from jaxopt_dl.second_order.directions import damped_newton_step
from jaxopt_dl.second_order.driver import OptimizeResult, run
from jaxopt_dl.second_order.trustregion import trust_region

__all__ = ["least_squares", "LEAST_SQUARES_METHODS"]

LEAST_SQUARES_METHODS = ("levenberg_marquardt", "gauss_newton")


def least_squares(
    residual_fn: Callable[[Any], jax.Array],
    x0: Any,
    method: str = "levenberg_marquardt",
    maxiter: int = 100,
    tol: float = 1e-6,
    diagonal_scaling: bool = False,
    damping: float = 1e-3,
    max_rejections: int = 50,
    xtol: float = 0.0,
    ftol: float = 0.0,
) -> OptimizeResult:
    """Minimize ``0.5 ||r(x)||^2`` by Gauss-Newton or Levenberg-Marquardt.

    With ``J`` the Jacobian of the residuals, ``A = J^T J`` and ``g = J^T r``:

    - ``"gauss_newton"``: the full step ``h = argmin ||J h + r||`` (``jnp.linalg.lstsq``),
      no damping and no line search — fast near a good fit, and it may diverge from a
      bad start (the driver then stops at the best point, ``converged=False``).
    - ``"levenberg_marquardt"``: solve ``(A + mu D) h = -g`` with ``D = I`` (Levenberg) or
      ``D = diag(A)`` (``diagonal_scaling=True``, Marquardt's scale invariance). A step
      is accepted when the gain ratio ``rho = (F(x) - F(x+h)) / (L(0) - L(h)) > 0``, with
      ``L(0) - L(h) = 0.5 h^T (mu D h - g)``; then
      ``mu <- mu * max(1/3, 1 - (2 rho - 1)^3)``, else ``mu <- nu mu``, ``nu <- 2 nu``
      (Nielsen's update). ``mu_0 = damping * max_i A_ii`` (``damping`` alone with
      scaling). Rejected trials cost one residual evaluation each.

    Stops (``result.status``, a :class:`~jaxopt_dl.second_order.driver.Status`) as
    converged at ``||g||_2 <= tol`` or, when ``xtol``/``ftol`` are positive, after a
    step with ``||dx|| < xtol (xtol + ||x||)`` or ``|dF| < ftol F`` (scipy's tests);
    as max steps reached after ``maxiter`` accepted steps; as search failed when
    ``max_rejections`` trials in a row are rejected; as non-finite when ``r(x0)`` or
    a Gauss-Newton step is NaN/Inf. Works under ``jax.jit``/``jax.vmap``
    and on pytree ``x0`` (flattened with ``ravel_pytree``); residuals of any shape are
    flattened.

    Args:
      residual_fn: ``x -> residuals`` (an array with at least one dimension).
      x0: the starting point (any pytree of float arrays).
      method: ``"levenberg_marquardt"`` or ``"gauss_newton"``.
      maxiter: the most (accepted) steps.
      tol: the tolerance on ``||J^T r||_2``.
      diagonal_scaling: damp with ``diag(J^T J)`` instead of the identity (LM only).
      damping: the initial damping factor ``tau`` (LM only).
      max_rejections: the most consecutive rejected LM trials (LM only).
      xtol: the relative step tolerance (scipy's ``xtol``; 0 turns the test off).
      ftol: the relative cost-change tolerance (scipy's ``ftol``; 0 turns it off).

    Returns:
      An :class:`~jaxopt_dl.second_order.driver.OptimizeResult` whose ``fun`` is
      ``0.5 ||r(x)||^2`` (scipy's ``cost``).

    Raises:
      ValueError: unknown ``method``, non-positive ``maxiter``/``tol``/``damping``,
        negative ``xtol``/``ftol``,
        ``x0`` with NaN/Inf, or ``residual_fn`` returning a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> t = jnp.linspace(0.0, 3.0, 20); y = 2.0 * jnp.exp(-1.5 * t) + 0.5
      >>> res = least_squares(lambda p: p[0] * jnp.exp(-p[1] * t) + p[2] - y,
      ...                     jnp.array([1.0, 1.0, 0.0]), tol=1e-5)
      >>> [round(float(v), 3) for v in res.x]
      [2.0, 1.5, 0.5]

    References:
      Levenberg (1944); Marquardt (1963); Madsen, Nielsen & Tingleff, Methods for
      Non-Linear Least Squares Problems, Alg. 3.16 (2004); Nocedal & Wright,
      Numerical Optimization, Sec. 10.3 (2006).
    """
    check_choice("method", method, LEAST_SQUARES_METHODS)
    check_stopping(maxiter, tol, xtol, ftol)
    check_bool("diagonal_scaling", diagonal_scaling)
    check_positive("damping", damping)
    check_int("max_rejections", max_rejections, 1)
    x0 = as_float_tree(x0)
    check_x0(x0)
    shape = output_shape(residual_fn, x0, "residual_fn")
    if shape == ():
        raise ValueError(
            "residual_fn must return a vector of residuals (at least 1-D), got a scalar; "
            "for a scalar objective use minimize"
        )
    return _least_squares(
        x0,
        maxiter,
        tol,
        xtol,
        ftol,
        damping,
        residual_fn=residual_fn,
        method=method,
        diagonal_scaling=bool(diagonal_scaling),
        max_rejections=int(max_rejections),
    )


class _LMState(NamedTuple):
    r: jax.Array
    jac: jax.Array
    mu: jax.Array
    nu: jax.Array


def _least_squares_impl(
    x0, maxiter, tol, xtol, ftol, damping, *, residual_fn, method, diagonal_scaling, max_rejections
) -> OptimizeResult:
    flat0, unravel = ravel_pytree(x0)

    def residuals(z):
        return jnp.ravel(residual_fn(unravel(z)))

    m = output_shape(residuals, flat0, "residual_fn")[0]
    jacobian = jax.jacfwd(residuals) if m >= flat0.shape[0] else jax.jacrev(residuals)

    def linearize(z):
        r = residuals(z)
        jac = jacobian(z)
        return r, jac, 0.5 * jnp.vdot(r, r), jac.T @ r

    def scale_of(jac):
        diag = jnp.sum(jac * jac, axis=0)
        if not diagonal_scaling:
            return jnp.ones_like(diag)
        return jnp.maximum(diag, jnp.finfo(diag.dtype).eps * jnp.maximum(1.0, jnp.max(diag)))

    def gauss_newton_step(x, f, g, st):
        h = jnp.linalg.lstsq(st.jac, -st.r)[0]
        x_new = x + h
        r, jac, f_new, g_new = linearize(x_new)
        one = jnp.ones([], jnp.int32)
        return x_new, f_new, g_new, st._replace(r=r, jac=jac), jnp.asarray(True), one, one

    def lm_step(x, f, g, st):
        gram = st.jac.T @ st.jac
        scale = scale_of(st.jac)

        def evaluate(x_t):
            r_t = residuals(x_t)
            # F(x) - F(x+h) as 0.5 (r - r_t).(r + r_t): no cancellation near the optimum.
            return 0.5 * jnp.vdot(r_t, r_t), 0.5 * jnp.vdot(st.r - r_t, st.r + r_t), r_t

        search = trust_region(
            lambda mu: damped_newton_step(gram, g, mu, scale),
            evaluate,
            x,
            f,
            st.r,
            st.mu,
            st.nu,
            maxiter=max_rejections,
        )
        jac = jacobian(search.x)
        g_new = jac.T @ search.value
        state = _LMState(search.value, jac, search.damping, search.growth)
        one = jnp.ones([], jnp.int32)
        return search.x, search.fun, g_new, state, search.success, search.nfev, one

    r0, jac0, f0, g0 = linearize(flat0)
    mu0 = damping * (1.0 if diagonal_scaling else jnp.max(jnp.sum(jac0 * jac0, axis=0)))
    st0 = _LMState(r0, jac0, jnp.asarray(mu0, f0.dtype), jnp.asarray(2.0, f0.dtype))
    step = lm_step if method == "levenberg_marquardt" else gauss_newton_step
    res = run(step, flat0, f0, g0, st0, maxiter, tol, xtol, ftol)
    return res._replace(x=unravel(res.x))


_least_squares = cached_jit(
    _least_squares_impl, static=("residual_fn", "method", "diagonal_scaling", "max_rejections")
)
