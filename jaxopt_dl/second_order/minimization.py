"""``minimize``: a descent direction + a line search, run by the solver driver.

============  =====================================  ======================
method        direction                              default line search
============  =====================================  ======================
``"gd"``      ``-g``                                 Armijo backtracking
``"newton"``  ``-(H + lambda I)^{-1} g`` (damped)    Armijo backtracking (or a trust region)
``"bfgs"``    ``-H_k g`` (inverse-Hessian update)    strong-Wolfe zoom
``"lbfgs"``   two-loop recursion, memory ``m``       strong-Wolfe zoom
optax tx      ``tx.update(g, state, x)``             none (the transform's step)
============  =====================================  ======================
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Union

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from jaxopt_dl._core import check_choice, check_decay, check_int, check_positive
from jaxopt_dl.second_order import directions, linesearch
from jaxopt_dl.second_order._inputs import (
    as_float_tree,
    cached_jit,
    check_stopping,
    check_x0,
    output_shape,
)
from jaxopt_dl.second_order.driver import OptimizeResult, run
from jaxopt_dl.second_order.trustregion import trust_region

__all__ = ["minimize", "METHODS"]

METHODS = ("gd", "newton", "bfgs", "lbfgs")
LINESEARCHES = ("backtracking", "zoom", "none", "trust_region")

_COMMON = {"c1": 1e-4, "c2": 0.9, "shrink": 0.5, "linesearch_maxiter": 30}
_DEFAULTS = {
    "gd": {"linesearch": "backtracking", **_COMMON},
    "newton": {"linesearch": "backtracking", "damping": 1e-3, **_COMMON},
    "bfgs": {"linesearch": "zoom", **_COMMON},
    "lbfgs": {"linesearch": "zoom", "memory": 10, **_COMMON},
}


def minimize(
    fun: Callable[[Any], jax.Array],
    x0: Any,
    method: Union[str, optax.GradientTransformation] = "bfgs",
    maxiter: int = 500,
    tol: float = 1e-6,
    xtol: float = 0.0,
    ftol: float = 0.0,
    **options: Any,
) -> OptimizeResult:
    """Minimize a scalar function of a pytree; the whole solve is one ``lax.while_loop``.

    Each iteration computes a direction ``d`` (see the module table) and a step
    ``t`` by a line search, ``x <- x + t d``; quasi-Newton methods then update their
    curvature model with ``s = t d`` and ``y = g_new - g``. The loop stops when

    .. math:: \\|\\nabla f(x)\\|_2 \\le \\text{tol}

    (an absolute test: in float32 choose ``tol`` above the gradient's rounding
    noise, ~1e-3 relative to its scale) or, when ``xtol``/``ftol`` are positive, after
    a step with ``||x_new - x|| < xtol (xtol + ||x_new||)`` or
    ``|f - f_new| < ftol |f|`` (scipy's ``xtol``/``ftol`` tests); it also stops after
    ``maxiter`` iterations, when the line search finds no acceptable step, or at a
    non-finite value. ``result.status`` (a
    :class:`~jaxopt_dl.second_order.driver.Status`) says which. An optax ``GradientTransformation`` passed as
    ``method`` runs as a first-order method (``x <- x + tx.update(g, ...)``) with the
    same stopping rule; ``GradientTransformationExtraArgs`` also receive ``value``,
    ``grad`` and ``value_fn`` (so ``optax.lbfgs()`` works).

    Parameters are flattened with ``jax.flatten_util.ravel_pytree`` for the built-in
    methods. The function and ``x0``'s shapes key a compilation cache, so repeated
    solves of the same ``fun`` compile once; ``minimize`` also works inside ``jax.jit``
    and ``jax.vmap`` (over ``x0``, ``tol`` or ``maxiter``).

    Args:
      fun: the objective, ``x -> scalar``.
      x0: the starting point (any pytree of float arrays).
      method: ``"gd"``, ``"newton"``, ``"bfgs"``, ``"lbfgs"`` or an optax transformation.
      maxiter: the most iterations.
      tol: the tolerance on the gradient's 2-norm (scipy's ``gtol``).
      xtol: the relative tolerance on the step's length (0 turns the test off).
      ftol: the relative tolerance on the objective's change (0 turns it off).
      **options: ``linesearch`` (``"backtracking"``, ``"zoom"``, ``"none"`` = full
        steps, or for newton ``"trust_region"``: the damped step
        ``-(H + mu I)^{-1} g`` with ``mu`` chosen by
        :func:`~jaxopt_dl.second_order.trustregion.trust_region`, starting at
        ``damping * max(1, max_i |H_ii|)``; ``linesearch_maxiter`` bounds its trials), ``c1`` (1e-4), ``c2`` (0.9, zoom only), ``shrink`` (0.5, backtracking
        only), ``linesearch_maxiter`` (30); ``damping`` for newton (1e-3; ``0`` gives
        pure Newton ``x <- x - H^{-1} g`` with full steps unless ``linesearch`` is
        given, which converges to a saddle point when started near one);
        ``memory`` for lbfgs (10).

    Returns:
      An :class:`~jaxopt_dl.second_order.driver.OptimizeResult` ``(x, fun, nit,
      converged, grad_norm, nfev, ngev, status)``; when not converged, ``x`` is the best point
      seen. ``nfev``/``ngev`` count the objective and gradient evaluations (one pair
      per line-search trial; for an optax method one pair per step, not counting the
      calls a ``GradientTransformationExtraArgs`` makes through ``value_fn``).

    Raises:
      ValueError: unknown ``method`` or option, non-positive ``maxiter``/``tol``,
        negative ``xtol``/``ftol``, ``x0``
        with NaN/Inf, or ``fun`` not returning a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> rosen = lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
      >>> res = minimize(rosen, jnp.array([-1.2, 1.0]), method="bfgs", tol=1e-4)
      >>> bool(res.converged), jnp.round(res.x, 3).tolist()
      (True, [1.0, 1.0])

    References:
      Nocedal & Wright, Numerical Optimization, 2nd ed., Ch. 3, 6, 7 (2006);
      optimistix's solver = descent + search design (Kidger, 2023).
    """
    if isinstance(method, optax.GradientTransformation):
        if options:
            raise ValueError(
                f"options {sorted(options)} do not apply when method is an optax transformation"
            )
    elif not isinstance(method, str) or method not in METHODS:
        raise ValueError(
            f"method must be one of {METHODS} or an optax GradientTransformation, "
            f"got method={method!r}"
        )
    else:
        unknown = sorted(set(options) - set(_DEFAULTS[method]))
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for method={method!r}; "
                f"valid: {sorted(_DEFAULTS[method])}"
            )
        _check_options({**_DEFAULTS[method], **options})
    check_stopping(maxiter, tol, xtol, ftol)
    x0 = as_float_tree(x0)
    check_x0(x0)
    shape = output_shape(fun, x0, "fun")
    if shape != ():
        raise ValueError(f"fun must return a scalar, got an output of shape {shape}")
    return _minimize(
        x0,
        maxiter,
        tol,
        xtol,
        ftol,
        fun=fun,
        method=method,
        options=tuple(sorted(options.items())),
    )


def _check_options(opts: dict[str, Any]) -> None:
    check_choice("linesearch", opts["linesearch"], LINESEARCHES)
    for name in ("c1", "c2", "shrink"):
        check_positive(name, opts[name])
        check_decay(name, opts[name])
    check_int("linesearch_maxiter", opts["linesearch_maxiter"], 1)
    if opts["linesearch"] == "trust_region" and not (opts.get("damping", 0) > 0):
        raise ValueError(
            "linesearch='trust_region' needs method='newton' with damping > 0 (the trust "
            f"region asks the damped Newton step for shorter steps), got damping="
            f"{opts.get('damping')!r}"
        )


def _search(opts: dict[str, Any]) -> Callable:
    if opts["linesearch"] == "none":
        return linesearch.full_step
    if opts["linesearch"] == "zoom":
        return functools.partial(
            linesearch.zoom, c1=opts["c1"], c2=opts["c2"], maxiter=opts["linesearch_maxiter"]
        )
    return functools.partial(
        linesearch.backtracking,
        c1=opts["c1"],
        shrink=opts["shrink"],
        maxiter=opts["linesearch_maxiter"],
    )


def _direction(method: str, fun: Callable, opts: dict[str, Any]) -> directions.Direction:
    if method == "newton":
        return directions.newton(fun, opts["damping"])
    if method == "lbfgs":
        return directions.lbfgs(opts["memory"])
    return directions.bfgs() if method == "bfgs" else directions.gradient()


def _minimize_impl(x0, maxiter, tol, xtol, ftol, *, fun, method, options) -> OptimizeResult:
    if isinstance(method, optax.GradientTransformation):
        return _first_order(fun, x0, method, maxiter, tol, xtol, ftol)
    opts = {**_DEFAULTS[method], **dict(options)}
    if method == "newton" and opts["damping"] == 0 and "linesearch" not in dict(options):
        opts["linesearch"] = "none"
    flat0, unravel = ravel_pytree(x0)
    flat_fun = lambda z: fun(unravel(z))  # noqa: E731
    value_and_grad = jax.value_and_grad(flat_fun)
    if opts["linesearch"] == "trust_region":
        res = _trust_region_newton(flat_fun, flat0, opts, maxiter, tol, xtol, ftol)
        return res._replace(x=unravel(res.x))
    rule = _direction(method, flat_fun, opts)
    search = _search(opts)
    f0, g0 = value_and_grad(flat0)

    def step(x, f, g, aux):
        state, last_step = aux
        d = rule.direction(state, x, g)
        # First trial step: 1 for Newton; else 1/||g|| on the first iteration (d = -g has
        # the gradient's scale), then 1 for quasi-Newton and twice the last step for gd.
        first = jnp.minimum(1.0, 1.0 / jnp.linalg.norm(g))
        later = 2.0 * last_step if method == "gd" else jnp.ones_like(last_step)
        t0 = 1.0 if method == "newton" else jnp.where(last_step > 0, later, first)
        ls = search(value_and_grad, x, f, g, d, init_step=t0)
        state = rule.update(state, ls.x - x, ls.grad - g)
        return ls.x, ls.fun, ls.grad, (state, ls.step), ls.success, ls.nfev, ls.nfev

    aux0 = (rule.init(flat0, g0), jnp.zeros([], f0.dtype))
    res = run(step, flat0, f0, g0, aux0, maxiter, tol, xtol, ftol)
    return res._replace(x=unravel(res.x))


def _trust_region_newton(fun, x0, opts, maxiter, tol, xtol, ftol) -> OptimizeResult:
    """Newton's damped step (:func:`directions.damped_newton_step` on the exact Hessian)
    searched by the trust region; each trial evaluates ``f`` and its gradient once."""
    value_and_grad = jax.value_and_grad(fun)
    hessian = jax.hessian(fun)

    def step(x, f, g, aux):
        damping, growth = aux
        h = hessian(x)

        def evaluate(x_t):
            f_t, g_t = value_and_grad(x_t)
            return f_t, f - f_t, g_t

        search = trust_region(
            lambda mu: directions.damped_newton_step(h, g, mu),
            evaluate,
            x,
            f,
            g,
            damping,
            growth,
            maxiter=opts["linesearch_maxiter"],
        )
        aux = (search.damping, search.growth)
        return search.x, search.fun, search.value, aux, search.success, search.nfev, search.nfev

    f0, g0 = value_and_grad(x0)
    mu0 = opts["damping"] * jnp.maximum(1.0, jnp.max(jnp.abs(jnp.diag(hessian(x0)))))
    aux0 = (jnp.asarray(mu0, f0.dtype), jnp.asarray(2.0, f0.dtype))
    return run(step, x0, f0, g0, aux0, maxiter, tol, xtol, ftol)


def _first_order(fun, x0, tx, maxiter, tol, xtol, ftol) -> OptimizeResult:
    value_and_grad = jax.value_and_grad(fun)
    extra = isinstance(tx, optax.GradientTransformationExtraArgs)

    def step(x, f, g, state):
        kwargs = {"value": f, "grad": g, "value_fn": fun} if extra else {}
        updates, state = tx.update(g, state, x, **kwargs)
        x = optax.apply_updates(x, updates)
        f, g = value_and_grad(x)
        one = jnp.ones([], jnp.int32)
        return x, f, g, state, jnp.asarray(True), one, one

    f0, g0 = value_and_grad(x0)
    return run(step, x0, f0, g0, tx.init(x0), maxiter, tol, xtol, ftol)


_minimize = cached_jit(_minimize_impl, static=("fun", "method", "options"))
