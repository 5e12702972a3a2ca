"""A trust-region search: accept a damped step by its gain ratio, adapt the damping.

Where a line search scales one direction, a trust region asks its descent for a new
step at a new damping ``mu`` after each rejection (a larger ``mu`` is a shorter step
closer to ``-g``), so the damping plays the role of the inverse of the region's radius.
Paired with :func:`~jaxopt_dl.second_order.directions.damped_newton_step` on ``J^T J``
it is Levenberg-Marquardt; on an exact Hessian, a trust-region Newton method.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxopt_dl._core import tree_add_scaled

__all__ = ["TrustRegionResult", "trust_region", "nielsen_update"]


class TrustRegionResult(NamedTuple):
    """The outcome of a trust-region search.

    Attributes:
      x: the accepted point ``x + h`` (``x`` when the search failed).
      fun: the objective at ``x``.
      value: what ``evaluate`` returned beside the objective at ``x`` (e.g. the
        residuals), so the caller does not evaluate it again.
      damping: the damping ``mu`` for the next search.
      growth: Nielsen's growth factor ``nu`` for the next search.
      success: whether a trial was accepted.
      nfev: the number of trials (``evaluate`` calls).
    """

    x: Any
    fun: jax.Array
    value: Any
    damping: jax.Array
    growth: jax.Array
    success: jax.Array
    nfev: jax.Array


def nielsen_update(
    damping: jax.Array, growth: jax.Array, ratio: jax.Array, accept: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Nielsen's damping update from the gain ratio ``rho`` of a trial.

    .. math::
        \\text{accepted: } \\mu \\leftarrow \\mu \\max(1/3,\\, 1 - (2\\rho - 1)^3),\\;
        \\nu \\leftarrow 2; \\qquad
        \\text{rejected: } \\mu \\leftarrow \\nu\\mu,\\; \\nu \\leftarrow 2\\nu

    Args:
      damping: the damping ``mu`` of the trial.
      growth: the growth factor ``nu`` (2 after an accepted trial).
      ratio: the gain ratio ``rho`` (actual over predicted decrease).
      accept: whether the trial was accepted.

    Returns:
      The next ``(mu, nu)``.

    Example:
      >>> import jax.numpy as jnp
      >>> mu, nu = nielsen_update(jnp.array(1.0), jnp.array(2.0), jnp.array(1.0), True)
      >>> round(float(mu), 4), float(nu)
      (0.3333, 2.0)

    References:
      Nielsen, Damping parameter in Marquardt's method, IMM-REP-1999-05 (1999);
      Madsen, Nielsen & Tingleff, Methods for Non-Linear Least Squares Problems,
      eq. 3.15 (2004).
    """
    shrink = jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3)
    mu = jnp.where(accept, damping * shrink, damping * growth)
    nu = jnp.where(accept, jnp.full_like(growth, 2.0), 2.0 * growth)
    return mu, nu


def trust_region(
    propose: Callable[[jax.Array], tuple[Any, jax.Array]],
    evaluate: Callable[[Any], tuple[jax.Array, jax.Array, Any]],
    x: Any,
    fun: jax.Array,
    value: Any,
    damping: jax.typing.ArrayLike,
    growth: jax.typing.ArrayLike = 2.0,
    maxiter: int = 50,
) -> TrustRegionResult:
    """Try damped steps until one decreases the objective; adapt the damping.

    Each trial takes the step ``h = propose(mu)`` with the model's predicted decrease
    ``L(0) - L(h)``, evaluates ``x + h`` and forms the gain ratio

    .. math:: \\rho = \\frac{f(x) - f(x + h)}{L(0) - L(h)}.

    The trial is accepted when ``rho > 0`` and everything is finite; ``mu`` and ``nu``
    then follow :func:`nielsen_update` (after a rejection, the next trial has a larger
    ``mu``: a shorter step). One bounded ``lax.while_loop`` (jittable, vmappable).

    Args:
      propose: ``mu -> (h, predicted)``: the descent's step at damping ``mu`` (a pytree
        like ``x``) and its predicted decrease ``L(0) - L(h) > 0``.
      evaluate: ``x_t -> (f_t, decrease, value_t)``: the objective at a trial point,
        the actual decrease ``f(x) - f(x_t)`` (the caller may compute it without
        cancellation, e.g. from residuals) and anything to hand back with the point.
      x: the current point (any pytree).
      fun: ``f(x)``.
      value: ``value`` at ``x`` (returned when no trial is accepted).
      damping: the first trial's ``mu > 0``.
      growth: Nielsen's ``nu`` (2 after an accepted step).
      maxiter: the most trials.

    Returns:
      A :class:`TrustRegionResult`.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxopt_dl.second_order.directions import damped_newton_step
      >>> f = lambda x: jnp.sum((x - 1.0) ** 2)
      >>> x = jnp.zeros(2); g = 2 * (x - 1.0)  # the Hessian is 2 I
      >>> propose = lambda mu: damped_newton_step(2 * jnp.eye(2), g, mu)
      >>> res = trust_region(propose, lambda z: (f(z), f(x) - f(z), None), x, f(x), None, 1e-3)
      >>> bool(res.success), [round(float(v), 3) for v in res.x]
      (True, [1.0, 1.0])

    References:
      Nocedal & Wright, Numerical Optimization, 2nd ed., Alg. 4.1 (2006);
      Madsen, Nielsen & Tingleff, Methods for Non-Linear Least Squares Problems,
      Alg. 3.16 (2004).
    """
    dtype = jnp.result_type(fun)

    def trial(carry):
        i, mu, nu, _, _, _, _ = carry
        h, predicted = propose(mu)
        x_t = tree_add_scaled(x, 1.0, h)
        f_t, decrease, value_t = evaluate(x_t)
        ratio = decrease / predicted
        accept = jnp.isfinite(ratio) & jnp.isfinite(f_t) & (ratio > 0)
        mu, nu = nielsen_update(mu, nu, ratio, accept)
        return i + 1, mu, nu, x_t, f_t, value_t, accept

    init = (
        jnp.zeros([], jnp.int32),
        jnp.asarray(damping, dtype),
        jnp.asarray(growth, dtype),
        x,
        fun,
        value,
        jnp.asarray(False),
    )
    n, mu, nu, x_t, f_t, value_t, ok = jax.lax.while_loop(
        lambda c: (c[0] < maxiter) & ~c[6], trial, init
    )
    pick = lambda a, b: jnp.where(ok, a, b)  # noqa: E731
    return TrustRegionResult(
        x=jax.tree.map(pick, x_t, x),
        fun=pick(f_t, fun),
        value=jax.tree.map(pick, value_t, value),
        damping=mu,
        growth=nu,
        success=ok,
        nfev=n,
    )
