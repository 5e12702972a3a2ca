"""second_order: minimize / least_squares against scipy.optimize, line searches, directions
and the trust region against NumPy transcriptions of Nocedal & Wright and Madsen, Nielsen
& Tingleff, every status value reached on purpose, the xtol/ftol stops, bad input.

64-bit runs use the ``jax.enable_x64`` context so x64 does not leak to other modules.
Objectives are module-level functions so the solvers' compilation cache is shared.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize as so

from jaxopt_dl.second_order import Status, least_squares, minimize
from jaxopt_dl.second_order.directions import (
    bfgs_update,
    damped_newton_direction,
    damped_newton_step,
    lbfgs,
    lbfgs_two_loop,
)
from jaxopt_dl.second_order.linesearch import backtracking, zoom
from jaxopt_dl.second_order.trustregion import nielsen_update, trust_region

x64 = jax.enable_x64


def rosen(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def beale(x):
    a, b = x[0], x[1]
    return (1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2 + (2.625 - a + a * b**3) ** 2


QUAD_A = np.array([[4.0, 1, 0, 0], [1, 3, 0.5, 0], [0, 0.5, 2, 0.2], [0, 0, 0.2, 1]])
QUAD_B = np.array([1.0, -2, 3, 0.5])


def quad(x):
    a, b = jnp.asarray(QUAD_A, x.dtype), jnp.asarray(QUAD_B, x.dtype)
    return 0.5 * x @ (a @ x) - b @ x


def saddle(x):
    return x[0] ** 2 - x[1] ** 2 + x[1] ** 4 / 4


PROBLEMS = {
    "rosen2": (rosen, [[-1.2, 1.0], [2.0, 2.0], [-0.5, 0.5]], [1.0, 1.0]),
    "rosen4": (rosen, [[-1.2, 1.0, -1.2, 1.0], [0.5] * 4], [1.0] * 4),
    "rosen10": (rosen, [[0.0] * 10, [0.5] * 10], [1.0] * 10),
    "beale": (beale, [[1.0, 1.0], [0.0, 0.0], [2.0, 0.2]], [3.0, 0.5]),
    "quad": (quad, [[0.0] * 4, [5.0, -3, 2, 1]], np.linalg.solve(QUAD_A, QUAD_B).tolist()),
}
SCIPY = {
    "newton": ("Newton-CG", {"xtol": 1e-12}),
    "bfgs": ("BFGS", {"gtol": 1e-8}),
    "lbfgs": ("L-BFGS-B", {"gtol": 1e-8, "ftol": 1e-16, "maxcor": 10}),
}


@pytest.mark.parametrize("method", sorted(SCIPY))
@pytest.mark.parametrize(
    "problem",
    sorted(PROBLEMS),
)
def test_matches_scipy_minimum_within_1p5x_iterations(problem, method):
    fun, starts, minimum = PROBLEMS[problem]
    with x64(True):
        x0 = jnp.asarray(starts)
        res = jax.vmap(lambda s: minimize(fun, s, method=method, tol=1e-8))(x0)
        jac = jax.jit(jax.grad(fun))
        hess = jax.jit(jax.hessian(fun)) if method == "newton" else None
        name, opts = SCIPY[method]
        for i, start in enumerate(starts):
            ref = so.minimize(jax.jit(fun), np.asarray(start), jac=jac, hess=hess,
                              method=name, options=opts)  # fmt: skip
            assert bool(res.converged[i])
            np.testing.assert_allclose(res.x[i], ref.x, atol=1e-5)
            np.testing.assert_allclose(res.x[i], minimum, atol=1e-5)
            assert int(res.nit[i]) <= 1.5 * ref.nit, (int(res.nit[i]), ref.nit)
        assert res.x.dtype == jnp.float64


@pytest.mark.parametrize("method", ["gd", "newton", "bfgs", "lbfgs"])
def test_float32_rosenbrock(method):
    maxiter = 20000 if method == "gd" else 200
    res = minimize(rosen, jnp.array([-1.2, 1.0]), method=method, maxiter=maxiter, tol=1e-3)
    assert res.x.dtype == jnp.float32
    chex.assert_tree_all_finite(res)
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=2e-2)


def test_pytree_x0_matches_flat_solve_and_jit():
    def tree_fun(p):
        return quad(jnp.concatenate([p["a"].ravel(), p["b"]]))

    x0 = {"a": jnp.zeros((1, 3)), "b": jnp.ones(1)}
    with x64(True):
        x0 = jax.tree.map(lambda a: a.astype(jnp.float64), x0)
        res = jax.jit(lambda p: minimize(tree_fun, p, method="lbfgs", tol=1e-10))(x0)
        flat = minimize(quad, jnp.array([0.0, 0, 0, 1]), method="lbfgs", tol=1e-10)
    chex.assert_trees_all_equal_shapes(res.x, x0)
    np.testing.assert_allclose(np.concatenate([res.x["a"].ravel(), res.x["b"]]), flat.x, atol=1e-9)


def test_vmap_over_starts_equals_single_solves():
    starts = jnp.array([[-1.2, 1.0], [2.0, 2.0], [-0.5, 0.5]], jnp.float32)
    batched = jax.vmap(lambda s: minimize(rosen, s, method="bfgs", tol=1e-3))(starts)
    for i in range(starts.shape[0]):
        single = minimize(rosen, starts[i], method="bfgs", tol=1e-3)
        assert int(single.nit) == int(batched.nit[i])
        np.testing.assert_allclose(single.x, batched.x[i], rtol=1e-5, atol=1e-6)


def test_traced_tol_and_maxiter_under_vmap():
    tols = jnp.array([1e-1, 1e-4])
    res = jax.vmap(lambda t: minimize(rosen, jnp.array([-1.2, 1.0]), tol=t))(tols)
    assert int(res.nit[0]) < int(res.nit[1])
    res = jax.vmap(lambda m: minimize(rosen, jnp.array([-1.2, 1.0]), maxiter=m))(jnp.array([3, 5]))
    assert res.nit.tolist() == [3, 5]


def test_pure_newton_converges_to_saddle_damped_newton_escapes():
    with x64(True):
        x0 = jnp.array([0.5, 0.1])
        pure = minimize(saddle, x0, method="newton", damping=0.0, tol=1e-8)
        damped = minimize(saddle, x0, method="newton", tol=1e-8)
    assert bool(pure.converged) and bool(damped.converged)
    np.testing.assert_allclose(pure.x, [0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(jnp.abs(damped.x), [0.0, np.sqrt(2.0)], atol=1e-7)
    assert float(damped.fun) < float(pure.fun)


def _counted(fn, calls):
    """``fn`` that adds one to ``calls[0]`` on the host each time its value is computed."""

    def counted(x):
        jax.debug.callback(lambda: calls.__setitem__(0, calls[0] + 1))
        return fn(x)

    return counted


@pytest.mark.parametrize(
    "method, linesearch",
    [("gd", "backtracking"), ("gd", "zoom"), ("bfgs", "zoom"), ("bfgs", "backtracking"),
     ("lbfgs", "zoom"), ("adam", None)],
)  # fmt: skip
def test_evaluation_counts_equal_the_host_side_count(method, linesearch):
    calls = [0]
    fun = _counted(rosen, calls)
    options = {} if linesearch is None else {"linesearch": linesearch}
    tx = optax.adam(0.1) if method == "adam" else method
    res = minimize(fun, jnp.array([-1.2, 1.0]), method=tx, maxiter=300, tol=1e-4, **options)
    jax.block_until_ready(res)
    assert int(res.nfev) == int(res.ngev) == calls[0]
    assert int(res.nfev) >= int(res.nit) + 1
    if method == "adam":
        assert int(res.nfev) == int(res.nit) + 1


def test_bfgs_evaluation_count_on_a_quadratic_is_close_to_scipys():
    with x64(True):
        res = minimize(quad, jnp.zeros(4), method="bfgs", tol=1e-8)
        ref = so.minimize(jax.jit(quad), np.zeros(4), jac=jax.jit(jax.grad(quad)), method="BFGS",
                          options={"gtol": 1e-8})  # fmt: skip
    assert bool(res.converged) and ref.success
    assert int(res.nfev) <= 1.5 * ref.nfev and int(res.ngev) <= 1.5 * ref.njev


def test_least_squares_counts_residual_and_jacobian_evaluations():
    calls = [0]
    with x64(True):
        res = least_squares(_counted(exp_residual, calls), jnp.array([1.0, 1.0, 0.0]),
                            method="levenberg_marquardt", tol=1e-9)  # fmt: skip
        jax.block_until_ready(res)
    # A Jacobian (forward mode) also computes the residuals once.
    assert int(res.nfev) + int(res.ngev) == calls[0]
    assert int(res.ngev) == int(res.nit) + 1 and int(res.nfev) >= int(res.nit) + 1


def test_optax_transformation_as_method_matches_optax_loop():
    tx = optax.sgd(0.05, momentum=0.5)
    x0 = {"w": jnp.array([5.0, -3.0, 2.0, 1.0])}
    fun = lambda p: quad(p["w"])  # noqa: E731
    res = minimize(fun, x0, method=tx, maxiter=25, tol=1e-12)
    params, state = x0, tx.init(x0)
    for _ in range(25):
        updates, state = tx.update(jax.grad(fun)(params), state, params)
        params = optax.apply_updates(params, updates)
    assert int(res.nit) == 25 and not bool(res.converged)
    np.testing.assert_allclose(res.x["w"], params["w"], rtol=1e-5, atol=1e-6)


def test_optax_lbfgs_as_method_reaches_rosenbrock_minimum():
    res = minimize(rosen, jnp.array([-1.2, 1.0]), method=optax.lbfgs(), tol=1e-3)
    assert bool(res.converged)
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=2e-2)


def test_diverging_solve_returns_best_finite_point():
    x0 = jnp.array([1.0, -2.0])
    res = minimize(lambda x: jnp.sum(x**2), x0, method=optax.sgd(10.0), maxiter=1000)
    assert not bool(res.converged) and int(res.status) == Status.NONFINITE
    chex.assert_tree_all_finite(res.x)
    np.testing.assert_allclose(res.x, x0)
    short = minimize(rosen, jnp.array([-1.2, 1.0]), method="gd", maxiter=5)
    assert not bool(short.converged) and int(short.nit) == 5
    assert short.message == "max_steps_reached"
    assert float(short.fun) < float(rosen(jnp.array([-1.2, 1.0])))


# -- least squares ---------------------------------------------------------------

T = np.linspace(0.0, 4.0, 40)
Y_EXP = 2.5 * np.exp(-1.3 * T) + 0.4 + 0.01 * np.random.default_rng(0).normal(size=T.size)
T_G = np.linspace(-3.0, 3.0, 50)
Y_G = (1.7 * np.exp(-((T_G - 0.4) ** 2) / (2 * 0.6**2)) + 0.2
       + 0.01 * np.random.default_rng(1).normal(size=T_G.size))  # fmt: skip


def exp_residual(p):
    t, y = jnp.asarray(T, p.dtype), jnp.asarray(Y_EXP, p.dtype)
    return p[0] * jnp.exp(-p[1] * t) + p[2] - y


def gauss_residual(p):
    """A Gaussian peak; the width enters squared, so its sign is compared as |p[2]|."""
    t, y = jnp.asarray(T_G, p.dtype), jnp.asarray(Y_G, p.dtype)
    return p[0] * jnp.exp(-((t - p[1]) ** 2) / (2 * p[2] ** 2)) + p[3] - y


def _canonical(x):
    x = np.array(x)
    if x.shape[-1] == 4:
        x[..., 2] = np.abs(x[..., 2])
    return x


def _scipy_lm(fn, x0):
    return so.least_squares(lambda p: np.asarray(fn(jnp.asarray(p))), x0, method="lm",
                            xtol=1e-15, ftol=1e-15, gtol=1e-15)  # fmt: skip


CURVES = [
    ("exp", exp_residual, [[1.0, 1.0, 0.0], [10.0, 5.0, -2.0]]),
    ("gauss", gauss_residual, [[1.0, 0.0, 1.0, 0.0], [1.0, 2.0, 1.0, 0.0]]),
]


@pytest.mark.parametrize("scaling", [False, True])
@pytest.mark.parametrize("name,fn,starts", CURVES, ids=[c[0] for c in CURVES])
def test_levenberg_marquardt_matches_scipy_lm(name, fn, starts, scaling):
    with x64(True):
        res = jax.vmap(lambda s: least_squares(fn, s, diagonal_scaling=scaling, tol=1e-8))(
            jnp.asarray(starts)
        )
        for i, start in enumerate(starts):
            ref = _scipy_lm(fn, np.asarray(start))
            assert bool(res.converged[i])
            np.testing.assert_allclose(_canonical(res.x[i]), _canonical(ref.x), rtol=1e-5)
            np.testing.assert_allclose(res.fun[i], ref.cost, rtol=1e-5)


def test_gauss_newton_matches_scipy_from_a_good_start():
    with x64(True):
        res = least_squares(exp_residual, jnp.array([1.0, 1.0, 0.0]), method="gauss_newton",
                            tol=1e-9)  # fmt: skip
        ref = _scipy_lm(exp_residual, np.array([1.0, 1.0, 0.0]))
    assert bool(res.converged)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-5)


def test_lm_recovers_from_bad_start_where_gauss_newton_fails():
    with x64(True):
        bad = jnp.array([1.0, 0.0, 3.0, 0.0])
        lm = least_squares(gauss_residual, bad, tol=1e-9)
        gn = least_squares(gauss_residual, bad, method="gauss_newton", tol=1e-9)
        ref = _scipy_lm(gauss_residual, np.asarray(bad))
    assert bool(lm.converged)
    np.testing.assert_allclose(_canonical(lm.x), _canonical(ref.x), rtol=1e-5)
    assert not bool(gn.converged)
    chex.assert_tree_all_finite(gn)
    assert float(gn.fun) > 100 * float(lm.fun)


def test_least_squares_pytree_and_float32():
    res = least_squares(lambda p: exp_residual(jnp.stack([p["a"], p["b"], p["c"]])),
                        {"a": 1.0, "b": 1.0, "c": 0.0}, tol=1e-4)  # fmt: skip
    assert res.x["a"].dtype == jnp.float32
    with x64(True):
        ref = _scipy_lm(exp_residual, np.array([1.0, 1.0, 0.0]))
    np.testing.assert_allclose([res.x["a"], res.x["b"], res.x["c"]], ref.x, rtol=1e-3)


# -- line searches and directions ---------------------------------------------------


def _numpy_backtracking(f, x, g, d, t, c1=1e-4, shrink=0.5, maxiter=30):
    """Nocedal & Wright Alg. 3.1, line by line."""
    fx = f(x)
    for _ in range(maxiter):
        if f(x + t * d) <= fx + c1 * t * g @ d:
            return t
        t = shrink * t
    return 0.0


LS_CASES = [
    (rosen, [-1.2, 1.0], 1.0),
    (rosen, [0.0, 0.0, 0.0], 1.0),
    (beale, [1.0, 1.0], 1.0),
    (quad, [5.0, -3.0, 2.0, 1.0], 3.0),
]


@pytest.mark.parametrize("fun,x,t0", LS_CASES)
def test_backtracking_matches_numpy_and_zoom_meets_strong_wolfe(fun, x, t0):
    with x64(True):
        x = jnp.asarray(x)
        vg = jax.value_and_grad(fun)
        f, g = vg(x)
        d = -g
        res = jax.jit(lambda x: backtracking(vg, x, f, g, d, init_step=t0))(x)
        ref = _numpy_backtracking(lambda z: float(fun(jnp.asarray(z))), np.asarray(x),
                                  np.asarray(g), np.asarray(d), t0)  # fmt: skip
        assert bool(res.success)
        np.testing.assert_allclose(float(res.step), ref, rtol=1e-12)
        np.testing.assert_allclose(res.fun, fun(x + ref * d), rtol=1e-12)

        c1, c2 = 1e-4, 0.1
        zres = jax.jit(lambda x: zoom(vg, x, f, g, d, init_step=t0, c1=c1, c2=c2))(x)
        t = float(zres.step)
        slope = float(g @ d)
        assert bool(zres.success) and t > 0
        assert float(zres.fun) <= float(f) + c1 * t * slope
        assert abs(float(zres.grad @ d)) <= c2 * abs(slope)
        np.testing.assert_allclose(zres.fun, fun(x + t * d), rtol=1e-12)


def test_backtracking_rejects_nonfinite_trials():
    fun = lambda x: jnp.where(x[0] < 0.85, jnp.nan, jnp.sum(x**2))  # noqa: E731
    vg = jax.value_and_grad(fun)
    x = jnp.array([0.9])
    res = backtracking(vg, x, *vg(x), jnp.array([-10.0]))
    assert bool(res.success) and 0 < float(res.step) <= 0.01
    assert float(res.fun) < float(fun(x))
    chex.assert_tree_all_finite(res)
    nowhere = lambda z: jnp.where(z[0] == 0.9, z[0] ** 2, jnp.nan)  # noqa: E731
    with x64(True):
        x = jnp.array([0.9])
        vg = jax.value_and_grad(nowhere)
        res = backtracking(vg, x, *vg(x), jnp.array([-1.0]))
        assert not bool(res.success) and float(res.step) == 0.0
        np.testing.assert_allclose(res.x, x)


def test_bfgs_update_matches_product_form():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(5, 5))
    h = m @ m.T + 5 * np.eye(5)
    s, y = rng.normal(size=5), rng.normal(size=5)
    y = y if y @ s > 0 else -y
    rho = 1 / (y @ s)
    eye = np.eye(5)
    ref = (eye - rho * np.outer(s, y)) @ h @ (eye - rho * np.outer(y, s)) + rho * np.outer(s, s)
    with x64(True):
        np.testing.assert_allclose(bfgs_update(jnp.asarray(h), s, y), ref, rtol=1e-10)


@pytest.mark.parametrize("n_pairs,memory", [(3, 5), (5, 5), (8, 5)])
def test_lbfgs_two_loop_equals_dense_bfgs_from_gamma_identity(n_pairs, memory):
    rng = np.random.default_rng(n_pairs)
    n = 6
    pairs = []
    for _ in range(n_pairs):
        s = rng.normal(size=n)
        y = s + 0.3 * rng.normal(size=n)
        pairs.append((s, y))
    g = rng.normal(size=n)
    kept = pairs[-memory:]
    s_new, y_new = kept[-1]
    h = (s_new @ y_new) / (y_new @ y_new) * np.eye(n)
    eye = np.eye(n)
    for s, y in kept:
        rho = 1 / (y @ s)
        h = (eye - rho * np.outer(s, y)) @ h @ (eye - rho * np.outer(y, s)) + rho * np.outer(s, s)
    with x64(True):
        rule = lbfgs(memory)
        state = rule.init(jnp.zeros(n), jnp.zeros(n))
        for s, y in pairs:
            state = rule.update(state, jnp.asarray(s), jnp.asarray(y))
        np.testing.assert_allclose(lbfgs_two_loop(state, jnp.asarray(g)), h @ g, rtol=1e-9)


def test_damped_newton_direction_matches_numpy_alg_3_3():
    def numpy_alg33(h, g, beta):
        min_diag = np.min(np.diag(h))
        tau = 0.0 if min_diag > 0 else beta - min_diag
        while True:
            try:
                np.linalg.cholesky(h + tau * np.eye(len(g)))
                return -np.linalg.solve(h + tau * np.eye(len(g)), g)
            except np.linalg.LinAlgError:
                tau = max(2 * tau, beta)

    cases = [np.diag([2.0, -2.0]), np.array([[1.0, 3.0], [3.0, 1.0]]), np.diag([4.0, 1.0])]
    g = np.array([1.0, -0.5])
    with x64(True):
        for h in cases:
            d = damped_newton_direction(jnp.asarray(h), jnp.asarray(g), 1e-3)
            np.testing.assert_allclose(d, numpy_alg33(h, g, 1e-3), rtol=1e-8)
            assert float(d @ g) < 0


# -- bad input ---------------------------------------------------------------------

BAD_MINIMIZE = [
    ({"method": "sgd"}, "method"),
    ({"method": 3}, "method"),
    ({"maxiter": 0}, "maxiter"),
    ({"maxiter": -5}, "maxiter"),
    ({"maxiter": 2.5}, "maxiter"),
    ({"tol": 0.0}, "tol"),
    ({"tol": -1e-3}, "tol"),
    ({"tol": float("nan")}, "tol"),
    ({"xtol": -1e-3}, "xtol"),
    ({"xtol": float("inf")}, "xtol"),
    ({"ftol": -1.0}, "ftol"),
    ({"ftol": float("nan")}, "ftol"),
    ({"method": "bfgs", "memory": 3}, "memory"),
    ({"method": "lbfgs", "memory": 0}, "memory"),
    ({"method": "newton", "damping": -1.0}, "damping"),
    ({"linesearch": "wolfe"}, "linesearch"),
    ({"method": "bfgs", "linesearch": "trust_region"}, "trust_region"),
    ({"method": "newton", "linesearch": "trust_region", "damping": 0.0}, "damping"),
    ({"method": optax.adam(1e-3), "memory": 3}, "options"),
]


@pytest.mark.parametrize("kwargs,word", BAD_MINIMIZE)
def test_minimize_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        minimize(rosen, jnp.array([-1.2, 1.0]), **kwargs)


def test_bad_x0_and_outputs():
    with pytest.raises(ValueError, match="x0"):
        minimize(rosen, jnp.array([jnp.nan, 1.0]))
    with pytest.raises(ValueError, match="x0"):
        least_squares(exp_residual, {"p": jnp.array([1.0, jnp.inf, 0.0])})
    with pytest.raises(ValueError, match="scalar"):
        minimize(lambda x: x**2, jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="residual_fn"):
        least_squares(lambda p: jnp.sum(p**2), jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="method"):
        least_squares(exp_residual, jnp.ones(3), method="dogleg")
    with pytest.raises(ValueError, match="damping"):
        least_squares(exp_residual, jnp.ones(3), damping=0.0)
    with pytest.raises(ValueError, match="maxiter"):
        least_squares(exp_residual, jnp.ones(3), maxiter=0)
    with pytest.raises(ValueError, match="xtol"):
        least_squares(exp_residual, jnp.ones(3), xtol=-1e-8)
    with pytest.raises(ValueError, match="ftol"):
        least_squares(exp_residual, jnp.ones(3), ftol=float("nan"))


# -- status values, reached on purpose ------------------------------------------------


@jax.custom_jvp
def uphill(x):
    """``sum(x^2)`` whose gradient claims the opposite sign: no step along ``-g`` descends.

    (Ten halvings keep every trial's increase above float32's rounding noise, which the
    approximate Armijo test would otherwise accept.)"""
    return jnp.sum(x**2)


@uphill.defjvp
def _uphill_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return uphill(x), jnp.vdot(-2.0 * x, dx)


@jax.custom_jvp
def uphill_residual(p):
    """Residuals ``p`` with the Jacobian ``-I``: every LM step increases the cost."""
    return p


@uphill_residual.defjvp
def _uphill_residual_jvp(primals, tangents):
    (p,), (dp,) = primals, tangents
    return p, -dp


def nan_objective(x):
    return jnp.sum(x**2) * jnp.nan


def nan_residual(p):
    return exp_residual(p) * jnp.nan


STATUS_CASES = [
    ("converged", lambda x0: minimize(rosen, x0, tol=1e-2), Status.CONVERGED),
    ("max_steps", lambda x0: minimize(rosen, x0, method="bfgs", maxiter=3),
     Status.MAX_STEPS_REACHED),
    ("max_steps_lm", lambda x0: least_squares(exp_residual, jnp.concatenate([x0, x0[:1]]),
                                              maxiter=1, tol=1e-12), Status.MAX_STEPS_REACHED),
    ("search_failed", lambda x0: minimize(uphill, x0, method="gd", linesearch_maxiter=10),
     Status.SEARCH_FAILED),
    ("search_failed_lm", lambda x0: least_squares(uphill_residual, x0, max_rejections=5),
     Status.SEARCH_FAILED),
    ("nonfinite_objective", lambda x0: minimize(nan_objective, x0), Status.NONFINITE),
    ("nonfinite_residual", lambda x0: least_squares(nan_residual, jnp.concatenate([x0, x0[:1]])),
     Status.NONFINITE),
    ("nonfinite_step", lambda x0: minimize(rosen, x0, method=optax.sgd(10.0)), Status.NONFINITE),
]  # fmt: skip


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name,solve,status", STATUS_CASES, ids=[c[0] for c in STATUS_CASES])
def test_each_status_is_reached_jitted_and_eager(name, solve, status, dtype):
    with x64(dtype == jnp.float64):
        x0 = jnp.array([-1.2, 1.0], dtype)
        eager = solve(x0)
        jitted = jax.jit(solve)(x0)
    for res in (eager, jitted):
        assert res.status.dtype == jnp.int32
        assert int(res.status) == status, (name, res.message)
        assert res.message == status.name.lower()
        assert bool(res.converged) == (status == Status.CONVERGED)
        assert jax.tree.leaves(res.x)[0].dtype == dtype
        if status != Status.NONFINITE or name == "nonfinite_step":
            chex.assert_tree_all_finite(res.x)
    assert int(jitted.nit) == int(eager.nit)
    if status == Status.MAX_STEPS_REACHED:
        assert int(eager.nit) in (1, 3)
    if name.startswith("nonfinite_objective") or name.startswith("nonfinite_residual"):
        assert int(eager.nit) == 0


def nan_beyond_five(x):
    return rosen(x) + jnp.where(x[0] > 5.0, jnp.nan, 0.0)


def test_statuses_under_vmap_differ_per_start():
    """One batch, three outcomes: each start's status is its own single solve's."""
    starts = jnp.array([[1.0, 1.0001], [-1.2, 1.0], [6.0, 0.0]])

    def solve(s):
        return minimize(nan_beyond_five, s, method="bfgs", maxiter=4, tol=1e-2)

    batched = jax.vmap(solve)(starts)
    singles = [int(solve(s).status) for s in starts]
    assert batched.status.tolist() == singles
    assert singles == [Status.CONVERGED, Status.MAX_STEPS_REACHED, Status.NONFINITE]


# -- xtol / ftol ----------------------------------------------------------------------


def _xtol_met(x, x_new, xtol):
    return np.linalg.norm(x_new - x) < xtol * (xtol + np.linalg.norm(x_new))


def _ftol_met(f, f_new, ftol):
    return abs(f - f_new) < ftol * abs(f)


STOP_CASES = [
    ("bfgs_xtol", lambda n, tol: minimize(rosen, jnp.array([-1.2, 1.0]), maxiter=n,
                                          tol=1e-30, xtol=tol), "x", 1e-5),
    ("bfgs_ftol", lambda n, tol: minimize(rosen, jnp.array([-1.2, 1.0]), maxiter=n,
                                          tol=1e-30, ftol=tol), "f", 1e-3),
    ("lm_xtol", lambda n, tol: least_squares(gauss_residual, jnp.array([1.0, 0.0, 1.0, 0.0]),
                                             maxiter=n, tol=1e-30, xtol=tol), "x", 1e-6),
    ("lm_ftol", lambda n, tol: least_squares(gauss_residual, jnp.array([1.0, 0.0, 1.0, 0.0]),
                                             maxiter=n, tol=1e-30, ftol=tol), "f", 1e-8),
]  # fmt: skip


@pytest.mark.parametrize("name,solve,kind,tol", STOP_CASES, ids=[c[0] for c in STOP_CASES])
def test_xtol_ftol_stop_at_the_first_step_that_meets_them(name, solve, kind, tol):
    """The solve stops as converged (``||g||`` is far above its 1e-30) at step ``n``: the
    step ``n-1 -> n`` meets scipy's test and ``n-2 -> n-1`` does not (the iterates of the
    same solve truncated by ``maxiter``; these methods decrease ``f`` monotonically, so a
    truncated solve returns its last iterate)."""
    with x64(True):
        res = solve(500, tol)
        n = int(res.nit)
        prev, prev2 = solve(n - 1, tol), solve(n - 2, tol)
    assert int(res.status) == Status.CONVERGED and float(res.grad_norm) > 1e-20
    assert int(prev.status) == Status.MAX_STEPS_REACHED and int(prev.nit) == n - 1
    met = {"x": lambda a, b: _xtol_met(np.asarray(a.x), np.asarray(b.x), tol),
           "f": lambda a, b: _ftol_met(float(a.fun), float(b.fun), tol)}[kind]  # fmt: skip
    assert met(prev, res)
    assert not met(prev2, prev)


def test_xtol_result_is_close_to_scipy_and_saves_steps():
    """xtol = 1e-6 stops LM early, at a point within a few xtol of scipy's minimizer."""
    with x64(True):
        start = jnp.array([1.0, 0.0, 1.0, 0.0])
        loose = least_squares(gauss_residual, start, tol=1e-30, xtol=1e-6, maxiter=500)
        tight = least_squares(gauss_residual, start, tol=1e-30, maxiter=500)
        ref = so.least_squares(lambda p: np.asarray(gauss_residual(jnp.asarray(p))),
                               np.asarray(start), method="trf", xtol=1e-6, ftol=1e-15,
                               gtol=1e-15)  # fmt: skip
    assert int(loose.status) == Status.CONVERGED and ref.status == 3  # scipy: xtol met
    assert int(loose.nit) < int(tight.nit)
    scale = np.linalg.norm(ref.x)
    np.testing.assert_allclose(_canonical(loose.x), _canonical(ref.x), atol=1e-4 * scale)


def test_xtol_ftol_on_pytrees_equal_the_flat_solves():
    """The tests read whole trees: a pytree solve stops at the flat solve's step (LM
    flattens x0; an optax method keeps the tree through the driver)."""

    def split(fn):
        return lambda p: fn(jnp.concatenate([p["a"], p["b"]]))

    tree0 = {"a": jnp.array([1.0, 0.0]), "b": jnp.array([1.0, 0.0])}
    with x64(True):
        tree0 = jax.tree.map(lambda v: v.astype(jnp.float64), tree0)
        flat0 = jnp.array([1.0, 0.0, 1.0, 0.0])
        kw = {"tol": 1e-30, "xtol": 1e-6}
        tree = least_squares(split(gauss_residual), tree0, **kw)
        flat = least_squares(gauss_residual, flat0, **kw)
        assert int(tree.status) == int(flat.status) == Status.CONVERGED
        assert int(tree.nit) == int(flat.nit)
        np.testing.assert_allclose(jnp.concatenate([tree.x["a"], tree.x["b"]]), flat.x)
        kw = {"method": optax.adam(1e-2), "tol": 1e-30, "ftol": 1e-3, "maxiter": 1000}
        tree = minimize(split(rosen), tree0, **kw)
        flat = minimize(rosen, flat0, **kw)
    assert int(tree.status) == int(flat.status) == Status.CONVERGED
    assert int(tree.nit) == int(flat.nit) < 1000


def test_tolerances_trace_under_vmap_and_jit():
    xtols = jnp.array([1e-2, 1e-8])
    res = jax.jit(jax.vmap(lambda t: minimize(rosen, jnp.array([-1.2, 1.0]), tol=1e-12,
                                              xtol=t)))(xtols)  # fmt: skip
    assert res.status.tolist() == [Status.CONVERGED, Status.CONVERGED]
    assert int(res.nit[0]) < int(res.nit[1])


# -- damped Newton step + trust region (Levenberg-Marquardt's parts) --------------------


def test_damped_newton_step_solves_the_system_and_predicts_the_model_decrease():
    rng = np.random.default_rng(3)
    jac = rng.normal(size=(6, 3))
    gram, g = jac.T @ jac, jac.T @ rng.normal(size=6)
    with x64(True):
        for mu, scale in [(1e-3, None), (0.5, np.diag(gram)), (10.0, np.ones(3))]:
            d_diag = None if scale is None else jnp.asarray(scale)
            h, predicted = damped_newton_step(jnp.asarray(gram), jnp.asarray(g), mu, d_diag)
            d = np.eye(3) if scale is None else np.diag(scale)
            np.testing.assert_allclose(h, -np.linalg.solve(gram + mu * d, g), rtol=1e-10)
            model = -(g @ np.asarray(h) + 0.5 * np.asarray(h) @ gram @ np.asarray(h))
            np.testing.assert_allclose(predicted, model, rtol=1e-10)
        h, predicted = damped_newton_step(jnp.diag(jnp.array([1.0, -2.0])), jnp.ones(2), 1.0)
    assert not np.isfinite(float(predicted))  # H + mu I indefinite: a trust region rejects


def test_nielsen_update_matches_numpy():
    def numpy_nielsen(mu, nu, rho):
        if rho > 0:
            return mu * max(1 / 3, 1 - (2 * rho - 1) ** 3), 2.0
        return mu * nu, 2 * nu

    with x64(True):
        for rho in [-1.0, 0.0, 0.1, 0.5, 0.75, 1.0, 2.0]:
            for mu, nu in [(1e-3, 2.0), (5.0, 8.0)]:
                got = nielsen_update(jnp.asarray(mu), jnp.asarray(nu), jnp.asarray(rho), rho > 0)
                np.testing.assert_allclose(got, numpy_nielsen(mu, nu, rho), rtol=1e-12)


def test_trust_region_alone_matches_a_numpy_loop_on_a_model_that_underestimates():
    """f = x^4 from x = 1 with the model H = 0: the first trials overshoot (rejected, mu
    grows by nu, nu doubles) until the gain ratio is positive; values, trial count and
    the next (mu, nu) equal a NumPy transcription of the loop."""

    def f(x):
        return jnp.sum(x**4)

    def propose(mu):  # the damped step of the model L(h) = f + g h (H = 0)
        return damped_newton_step(jnp.zeros((1, 1)), jnp.array([4.0]), mu)

    def numpy_loop(mu, nu):
        x, fx, g, trials = 1.0, 1.0, 4.0, 0
        while True:
            h = -g / mu
            trials += 1
            rho = (fx - (x + h) ** 4) / (0.5 * h * (mu * h - g))
            if rho > 0:
                return x + h, trials, mu * max(1 / 3, 1 - (2 * rho - 1) ** 3), 2.0
            mu, nu = mu * nu, 2 * nu

    with x64(True):
        x = jnp.array([1.0])
        res = jax.jit(
            lambda mu: trust_region(propose, lambda z: (f(z), f(x) - f(z), z), x, f(x), x, mu)
        )(0.5)
        stuck = trust_region(propose, lambda z: (f(z) + 10.0, -10.0, z), x, f(x), x, 1.0, maxiter=4)
    x_ref, trials, mu_ref, nu_ref = numpy_loop(0.5, 2.0)
    assert bool(res.success) and int(res.nfev) == trials == 3
    np.testing.assert_allclose(res.x, [x_ref], rtol=1e-12)
    np.testing.assert_allclose(res.value, res.x)
    np.testing.assert_allclose([res.damping, res.growth], [mu_ref, nu_ref], rtol=1e-12)
    assert not bool(stuck.success) and int(stuck.nfev) == 4
    np.testing.assert_allclose(stuck.x, x)


def _numpy_levenberg_marquardt(residual, jacobian, x, steps, tau=1e-3):
    """Madsen, Nielsen & Tingleff, Alg. 3.16, line by line (float64 NumPy)."""
    r, j = residual(x), jacobian(x)
    a, g = j.T @ j, j.T @ r
    mu, nu, nfev = tau * np.max(np.diag(a)), 2.0, 1
    for _ in range(steps):
        while True:
            h = np.linalg.solve(a + mu * np.eye(len(x)), -g)
            r_new = residual(x + h)
            nfev += 1
            rho = (r @ r - r_new @ r_new) / 2 / (0.5 * h @ (mu * h - g))
            if rho > 0:
                x, r, j = x + h, r_new, jacobian(x + h)
                a, g = j.T @ j, j.T @ r
                mu, nu = mu * max(1 / 3, 1 - (2 * rho - 1) ** 3), 2.0
                break
            mu, nu = mu * nu, 2 * nu
    return x, nfev


def test_levenberg_marquardt_is_the_textbook_algorithm_step_by_step():
    """least_squares = damped_newton_step + trust_region + driver; its iterates and trial
    counts equal a NumPy transcription of MNT Alg. 3.16 after each of the first steps."""
    start = np.array([1.0, 0.0, 3.0, 0.0])  # a bad start: some trials are rejected
    with x64(True):
        residual = jax.jit(gauss_residual)
        jacobian = jax.jit(jax.jacfwd(gauss_residual))
        for steps in range(1, 9):
            res = least_squares(gauss_residual, jnp.asarray(start), maxiter=steps, tol=1e-30)
            x, nfev = _numpy_levenberg_marquardt(
                lambda p: np.asarray(residual(p)), lambda p: np.asarray(jacobian(p)), start, steps
            )
            np.testing.assert_allclose(res.x, x, rtol=1e-8, atol=1e-10)
            assert int(res.nfev) == nfev, steps
    assert nfev > 9  # rejections happened


TRUST_EXACT_CASES = [(name, start) for name in ("beale", "quad", "rosen2", "rosen4", "rosen10")
                     for start in PROBLEMS[name][1]]  # fmt: skip


@pytest.mark.parametrize("name,start", TRUST_EXACT_CASES)
def test_trust_region_newton_matches_scipy_trust_exact(name, start):
    """The same two parts on the exact Hessian (``linesearch="trust_region"``) make a
    trust-region Newton method: scipy's trust-exact minimum, within 2x its steps."""
    fun, _, minimum = PROBLEMS[name]
    with x64(True):
        res = minimize(fun, jnp.asarray(start), method="newton", linesearch="trust_region",
                       tol=1e-8)  # fmt: skip
        ref = so.minimize(jax.jit(fun), np.asarray(start), jac=jax.jit(jax.grad(fun)),
                          hess=jax.jit(jax.hessian(fun)), method="trust-exact",
                          options={"gtol": 1e-8})  # fmt: skip
    assert int(res.status) == Status.CONVERGED and ref.success
    np.testing.assert_allclose(res.x, ref.x, atol=1e-7)
    np.testing.assert_allclose(res.x, minimum, atol=1e-7)
    assert int(res.nit) <= 2 * ref.nit, (int(res.nit), ref.nit)


def test_trust_region_newton_escapes_the_saddle_pure_newton_converges_to():
    """Started near the saddle of x^2 - y^2 + y^4/4, pure Newton converges to the saddle;
    the trust region rejects the steps of the indefinite ``H + mu I`` (no Cholesky
    factor), raises ``mu`` and reaches a minimum (0, +-sqrt 2), as trust-exact does."""
    hessian = jax.hessian(saddle)
    with x64(True):
        x0 = jnp.array([0.5, 0.1])
        res = jax.jit(lambda x: minimize(saddle, x, method="newton", linesearch="trust_region",
                                         tol=1e-8))(x0)  # fmt: skip
        pure = minimize(saddle, x0, method="newton", damping=0.0, tol=1e-10)
        ref = so.minimize(lambda z: float(saddle(jnp.asarray(z))), np.asarray(x0),
                          jac=lambda z: np.asarray(jax.grad(saddle)(jnp.asarray(z))),
                          hess=lambda z: np.asarray(hessian(jnp.asarray(z))), method="trust-exact",
                          options={"gtol": 1e-10})  # fmt: skip
    assert int(res.status) == Status.CONVERGED
    np.testing.assert_allclose(res.x, ref.x, atol=1e-7)
    np.testing.assert_allclose(np.abs(res.x), [0.0, np.sqrt(2.0)], atol=1e-8)
    np.testing.assert_allclose(pure.x, [0.0, 0.0], atol=1e-6)
