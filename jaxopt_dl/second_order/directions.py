"""Descent directions: gradient, (damped) Newton, BFGS and L-BFGS; the damped Newton step.

A :class:`Direction` is a triple of pure functions on flat parameter vectors::

    state = init(x, g)            # e.g. the inverse-Hessian approximation
    d = direction(state, x, g)    # the search direction at x
    state = update(state, s, y)   # after a step s = x_new - x, y = g_new - g

so the solver driver (``minimize``) pairs any direction with any line search.
:func:`damped_newton_step` is the descent of a trust region instead: the step at a
given damping, with the decrease its quadratic model predicts
(:func:`~jaxopt_dl.second_order.trustregion.trust_region` picks the damping).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxopt_dl._core import check_int, check_nonnegative

__all__ = [
    "Direction",
    "gradient",
    "newton",
    "damped_newton_direction",
    "damped_newton_step",
    "bfgs",
    "bfgs_update",
    "lbfgs",
    "lbfgs_two_loop",
]


class Direction(NamedTuple):
    """A descent-direction rule: ``init(x, g)``, ``direction(state, x, g)``, ``update(state, s, y)``.

    Attributes:
      init: ``(x, g) -> state`` from the starting point and its gradient (e.g. the
        initial inverse-Hessian approximation of BFGS).
      direction: ``(state, x, g) -> d``, the search direction at ``x`` (the built-in
        rules fall back to the steepest descent ``-g`` when theirs is not finite).
      update: ``(state, s, y) -> state`` after a step ``s = x_new - x`` with gradient
        change ``y = g_new - g`` (the curvature pair of quasi-Newton methods).
    """

    init: Callable[[jax.Array, jax.Array], Any]
    direction: Callable[[Any, jax.Array, jax.Array], jax.Array]
    update: Callable[[Any, jax.Array, jax.Array], Any]


def _keep(state: Any, s: jax.Array, y: jax.Array) -> Any:
    del s, y
    return state


def _descent_or_gradient(d: jax.Array, g: jax.Array) -> jax.Array:
    """``d`` when it is finite, else the steepest-descent direction ``-g``."""
    return jnp.where(jnp.all(jnp.isfinite(d)), d, -g)


def gradient() -> Direction:
    """Steepest descent, ``d = -grad f(x)`` (Cauchy 1847; Goodfellow et al. 2016, Sec. 4.3).

    Example:
      >>> import jax.numpy as jnp
      >>> gradient().direction((), jnp.zeros(2), jnp.array([1.0, -2.0]))
      Array([-1.,  2.], dtype=float32)
    """
    return Direction(lambda x, g: (), lambda state, x, g: -g, _keep)


def _curvature_ok(s: jax.Array, y: jax.Array) -> jax.Array:
    """The BFGS safeguard: ``y.s > eps ||s|| ||y||`` (otherwise the update is skipped)."""
    sy = jnp.vdot(s, y)
    tiny = jnp.finfo(sy.dtype).eps
    return jnp.isfinite(sy) & (sy > tiny * jnp.linalg.norm(s) * jnp.linalg.norm(y))


def _shifted_cholesky(hessian: jax.Array, shift: jax.Array) -> jax.Array:
    """The lower Cholesky factor of ``H + diag(shift)`` (NaN where it is not positive definite)."""
    return jnp.linalg.cholesky(hessian + jnp.diag(shift))


def damped_newton_step(
    hessian: jax.Array,
    g: jax.Array,
    damping: jax.typing.ArrayLike,
    scale: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The damped Newton step at a given damping and the decrease its model predicts.

    .. math::
        (H + \\mu D)\\,h = -g, \\qquad
        L(0) - L(h) = \\tfrac12\\, h^\\top(\\mu D h - g)

    for the quadratic model ``L(h) = f + g^T h + h^T H h / 2`` (the second form has no
    cancellation). With ``H = J^T J`` and ``g = J^T r`` it is the Levenberg-Marquardt
    (damped Gauss-Newton) step; a large ``mu`` gives a short step along ``-g / mu``,
    ``mu -> 0`` the Newton step. ``H + mu D`` is factorized by Cholesky: where it is
    not positive definite the step and prediction are NaN, which a trust region
    rejects (and raises ``mu``).

    Args:
      hessian: the ``(n, n)`` (approximate) Hessian ``H``.
      g: the gradient, shape ``(n,)``.
      damping: ``mu >= 0``.
      scale: the diagonal of ``D``, shape ``(n,)`` (``None``: the identity; Marquardt:
        ``diag(J^T J)``).

    Returns:
      ``(h, predicted)``: the step and ``L(0) - L(h)``.

    Example:
      >>> import jax.numpy as jnp
      >>> h, pred = damped_newton_step(2 * jnp.eye(2), jnp.array([2.0, 4.0]), 2.0)
      >>> h.tolist(), float(pred)
      ([-0.5, -1.0], 3.75)

    References:
      Levenberg (1944); Marquardt (1963); Madsen, Nielsen & Tingleff, Methods for
      Non-Linear Least Squares Problems, eq. 3.13 and 3.14 (2004).
    """
    d = jnp.ones_like(g) if scale is None else scale
    mu_d = jnp.asarray(damping, g.dtype) * d
    h = -jax.scipy.linalg.cho_solve((_shifted_cholesky(hessian, mu_d), True), g)
    return h, 0.5 * jnp.vdot(h, mu_d * h - g)


def damped_newton_direction(
    hessian: jax.Array, g: jax.Array, damping: jax.typing.ArrayLike, maxiter: int = 64
) -> jax.Array:
    """Newton direction with Levenberg-style damping: ``d = -(H + lambda I)^{-1} g``.

    ``lambda`` is 0 when ``H`` has a positive diagonal, else ``damping - min_i H_ii``;
    while the Cholesky factorization of ``H + lambda I`` fails (``H + lambda I`` is not
    positive definite) ``lambda <- max(2 lambda, damping)``. The result is a descent
    direction whenever the factorization succeeds; after ``maxiter`` failures the
    steepest-descent direction ``-g`` is returned.

    Args:
      hessian: the ``(n, n)`` Hessian ``H``.
      g: the gradient, shape ``(n,)``.
      damping: the smallest shift ``beta > 0``.
      maxiter: the most factorization attempts.

    Returns:
      The direction ``d``, shape ``(n,)``.

    Example:
      >>> import jax.numpy as jnp
      >>> H = jnp.diag(jnp.array([2.0, -2.0])); g = jnp.array([1.0, 1.0])
      >>> bool(jnp.dot(g, damped_newton_direction(H, g, 1e-3)) < 0)
      True

    References:
      Nocedal & Wright, Numerical Optimization, 2nd ed., Alg. 3.3 (2006);
      Levenberg (1944).
    """
    ones = jnp.ones(hessian.shape[0], hessian.dtype)
    beta = jnp.asarray(damping, hessian.dtype)
    min_diag = jnp.min(jnp.diag(hessian))
    tau0 = jnp.where(min_diag > 0, jnp.zeros_like(beta), beta - min_diag)

    def factor(tau):
        chol = _shifted_cholesky(hessian, tau * ones)
        return chol, jnp.all(jnp.isfinite(chol))

    def body(carry):
        i, tau, _, _ = carry
        tau = jnp.where(i == 0, tau, jnp.maximum(2.0 * tau, beta))
        chol, ok = factor(tau)
        return i + 1, tau, chol, ok

    init = (jnp.zeros([], jnp.int32), tau0, jnp.zeros_like(hessian), jnp.asarray(False))
    _, _, chol, ok = jax.lax.while_loop(lambda c: (c[0] < maxiter) & ~c[3], body, init)
    d = -jax.scipy.linalg.cho_solve((chol, True), g)
    descent = ok & (jnp.vdot(g, d) < 0)
    return jnp.where(descent & jnp.all(jnp.isfinite(d)), d, -g)


def newton(fun: Callable[[jax.Array], jax.Array], damping: float = 1e-3) -> Direction:
    """Newton's direction from the exact Hessian (``jax.hessian``), optionally damped.

    With ``damping > 0`` the direction is ``-(H + lambda I)^{-1} g`` with the smallest
    ``lambda`` (found by :func:`damped_newton_direction`) that makes ``H + lambda I``
    positive definite, so it is always a descent direction and the iteration is repelled
    by saddle points and maxima (negative curvature becomes a direction of descent).

    With ``damping=0`` it is the pure Newton direction ``-H^{-1} g``: the step to the
    stationary point of the local quadratic model, which is a saddle or a maximum when
    ``H`` is indefinite — pure Newton is *attracted* to saddle points (Dauphin et al.
    2014). A singular ``H`` falls back to ``-g``.

    Args:
      fun: the objective on flat vectors.
      damping: the smallest Levenberg shift ``beta`` (``0`` = pure Newton).

    Returns:
      A :class:`Direction`.

    Example:
      >>> import jax.numpy as jnp
      >>> rule = newton(lambda x: jnp.sum(x**2))
      >>> d = rule.direction((), jnp.array([1.0, 2.0]), jnp.array([2.0, 4.0]))
      >>> bool(jnp.allclose(d, jnp.array([-1.0, -2.0])))
      True

    References:
      Nocedal & Wright, Numerical Optimization, 2nd ed., Sec. 3.3-3.4 (2006);
      Dauphin et al., Identifying and attacking the saddle point problem (2014).
    """
    check_nonnegative("damping", damping)
    hess = jax.hessian(fun)
    pure = isinstance(damping, (int, float)) and damping == 0

    def direction(state, x, g):
        del state
        h = hess(x)
        if pure:
            return _descent_or_gradient(-jnp.linalg.solve(h, g), g)
        return damped_newton_direction(h, g, damping)

    return Direction(lambda x, g: (), direction, _keep)


class BFGSState(NamedTuple):
    """The inverse-Hessian approximation ``h`` and the number of updates made."""

    h: jax.Array
    count: jax.Array


def bfgs_update(h: jax.Array, s: jax.Array, y: jax.Array) -> jax.Array:
    """The BFGS update of the inverse Hessian ``H`` (N&W eq. 6.17).

    .. math:: H \\leftarrow (I - \\rho s y^\\top) H (I - \\rho y s^\\top) + \\rho s s^\\top,
              \\quad \\rho = 1 / y^\\top s

    Args:
      h: the current inverse-Hessian approximation, ``(n, n)``.
      s: the step ``x_new - x``.
      y: the gradient change ``g_new - g``.

    Returns:
      The updated ``(n, n)`` approximation (the caller checks ``y.s > 0``).
    """
    rho = 1.0 / jnp.vdot(y, s)
    hy = h @ y
    # Expanded form of the product: two rank-one corrections, O(n^2).
    return (
        h
        - rho * (jnp.outer(s, hy) + jnp.outer(hy, s))
        + (rho**2 * jnp.vdot(y, hy) + rho) * jnp.outer(s, s)
    )


def bfgs() -> Direction:
    """BFGS: ``d = -H g`` with the inverse-Hessian approximation ``H``.

    ``H`` starts as the identity; before the first update it is rescaled to
    ``(y.s / y.y) I`` (N&W eq. 6.20). An update whose curvature ``y.s`` is not
    positive (or not finite) is skipped, so ``H`` stays positive definite.

    Returns:
      A :class:`Direction` whose state is a :class:`BFGSState`.

    Example:
      >>> import jax.numpy as jnp
      >>> rule = bfgs(); st = rule.init(jnp.zeros(2), jnp.ones(2))
      >>> st = rule.update(st, jnp.array([1.0, 0.0]), jnp.array([2.0, 0.0]))
      >>> rule.direction(st, None, jnp.array([2.0, 0.0]))
      Array([-1.,  0.], dtype=float32)

    References:
      Nocedal & Wright, Numerical Optimization, 2nd ed., Alg. 6.1 (2006).
    """

    def init(x, g):
        return BFGSState(jnp.eye(x.shape[0], dtype=x.dtype), jnp.zeros([], jnp.int32))

    def direction(state, x, g):
        return _descent_or_gradient(-state.h @ g, g)

    def update(state, s, y):
        ok = _curvature_ok(s, y)
        scale = jnp.vdot(y, s) / jnp.vdot(y, y)
        h0 = jnp.where(state.count == 0, scale * state.h, state.h)
        new_h = bfgs_update(h0, s, y)
        return BFGSState(jnp.where(ok, new_h, state.h), state.count + ok.astype(jnp.int32))

    return Direction(init, direction, update)


class LBFGSState(NamedTuple):
    """The last ``m`` pairs ``(s, y)`` in a ring buffer, ``rho = 1/y.s``, and the pair count."""

    s: jax.Array
    y: jax.Array
    rho: jax.Array
    count: jax.Array


def lbfgs_two_loop(state: LBFGSState, g: jax.Array) -> jax.Array:
    """The L-BFGS two-loop recursion: ``H g`` from the stored pairs (N&W Alg. 7.4).

    ``H_0 = gamma I`` with ``gamma = s.y / y.y`` of the newest pair (N&W eq. 7.20),
    or the identity before any pair is stored.

    Args:
      state: an :class:`LBFGSState` with ``m`` slots.
      g: the vector to multiply (the gradient).

    Returns:
      The product ``H g`` (the direction is its negative).
    """
    m = state.s.shape[0]
    n_pairs = jnp.minimum(state.count, m)

    def newest_first(j, carry):
        q, alphas = carry
        idx = (state.count - 1 - j) % m
        valid = j < n_pairs
        alpha = jnp.where(valid, state.rho[idx] * jnp.vdot(state.s[idx], q), 0.0)
        return q - alpha * state.y[idx], alphas.at[idx].set(alpha)

    q, alphas = jax.lax.fori_loop(0, m, newest_first, (g, jnp.zeros(m, g.dtype)))
    newest = (state.count - 1) % m
    y_new = state.y[newest]
    gamma = jnp.where(
        n_pairs > 0, jnp.vdot(state.s[newest], y_new) / jnp.vdot(y_new, y_new), 1.0
    ).astype(g.dtype)

    def oldest_first(j, r):
        idx = (state.count - n_pairs + j) % m
        valid = j < n_pairs
        beta = state.rho[idx] * jnp.vdot(state.y[idx], r)
        return jnp.where(valid, r + state.s[idx] * (alphas[idx] - beta), r)

    return jax.lax.fori_loop(0, m, oldest_first, gamma * q)


def lbfgs(memory: int = 10) -> Direction:
    """Limited-memory BFGS with the last ``memory`` pairs (N&W Alg. 7.4/7.5).

    Pairs with non-positive curvature ``y.s`` are not stored (the same safeguard as
    :func:`bfgs`). Cost per direction: ``O(memory * n)``.

    Args:
      memory: the number of ``(s, y)`` pairs kept (scipy's ``maxcor``; default 10).

    Returns:
      A :class:`Direction` whose state is an :class:`LBFGSState`.

    Example:
      >>> import jax.numpy as jnp
      >>> rule = lbfgs(3); st = rule.init(jnp.zeros(2), jnp.ones(2))
      >>> st = rule.update(st, jnp.array([1.0, 0.0]), jnp.array([2.0, 0.0]))
      >>> d = rule.direction(st, None, jnp.array([2.0, 0.0]))
      >>> bool(jnp.allclose(d, jnp.array([-1.0, 0.0])))
      True

    References:
      Nocedal & Wright, Numerical Optimization, 2nd ed., Alg. 7.4 (2006);
      Liu & Nocedal, On the limited memory BFGS method (1989).
    """
    check_int("memory", memory, 1)
    if isinstance(memory, bool) or not isinstance(memory, int):
        raise ValueError(f"memory must be a positive int, got memory={memory!r}")

    def init(x, g):
        n = x.shape[0]
        zeros = jnp.zeros((memory, n), x.dtype)
        return LBFGSState(zeros, zeros, jnp.zeros(memory, x.dtype), jnp.zeros([], jnp.int32))

    def direction(state, x, g):
        return _descent_or_gradient(-lbfgs_two_loop(state, g), g)

    def update(state, s, y):
        ok = _curvature_ok(s, y)
        idx = state.count % memory
        stored = LBFGSState(
            state.s.at[idx].set(s),
            state.y.at[idx].set(y),
            state.rho.at[idx].set(1.0 / jnp.vdot(y, s)),
            state.count + 1,
        )
        return jax.tree.map(lambda new, old: jnp.where(ok, new, old), stored, state)

    return Direction(init, direction, update)
