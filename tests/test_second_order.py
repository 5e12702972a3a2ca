"""second_order: minimize / least_squares against scipy.optimize, line searches and
directions against NumPy transcriptions of Nocedal & Wright, bad input.

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

from jaxopt_dl.second_order import least_squares, minimize
from jaxopt_dl.second_order.directions import (
    bfgs_update,
    damped_newton_direction,
    lbfgs,
    lbfgs_two_loop,
)
from jaxopt_dl.second_order.linesearch import backtracking, zoom

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
    assert not bool(res.converged)
    chex.assert_tree_all_finite(res)
    np.testing.assert_allclose(res.x, x0)
    short = minimize(rosen, jnp.array([-1.2, 1.0]), method="gd", maxiter=5)
    assert not bool(short.converged) and int(short.nit) == 5
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
    ({"method": "bfgs", "memory": 3}, "memory"),
    ({"method": "lbfgs", "memory": 0}, "memory"),
    ({"method": "newton", "damping": -1.0}, "damping"),
    ({"linesearch": "wolfe"}, "linesearch"),
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
