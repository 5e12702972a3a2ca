"""Wall time per solve: jaxopt_dl.minimize vs scipy.optimize and optax.lbfgs.

A 1000-D extended Rosenbrock (float64), one solve and vmapped over 64 starts.
Not a test. Writes benchmarks/out/second_order.{json,md} and prints the table.

    PYTHONPATH=. python benchmarks/second_order.py
"""

from __future__ import annotations

import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize as so

jax.config.update("jax_enable_x64", True)

from jaxopt_dl.second_order import minimize  # noqa: E402

# From uniform(-1.5, 1.5) starts this problem needs thousands of iterations (scipy too),
# so every solver runs to the same iteration cap and the table reports nit and f.
N, BATCH, TOL, MAXITER = 1000, 64, 1e-5, 500


def rosen(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def optax_lbfgs_solve(x0):
    """The optax documentation's L-BFGS loop, as one while_loop."""
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(rosen)

    def step(carry):
        x, state = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=rosen)
        return optax.apply_updates(x, updates), state

    def cond(carry):
        _, state = carry
        count = optax.tree_utils.tree_get(state, "count")
        grad = optax.tree_utils.tree_get(state, "grad")
        return (count == 0) | ((count < MAXITER) & (optax.tree_utils.tree_norm(grad) > TOL))

    x, state = jax.lax.while_loop(cond, step, (x0, opt.init(x0)))
    return x, optax.tree_utils.tree_get(state, "count")


class ProgressRows(list):
    """A list of result rows that prints each row as it arrives."""

    def append(self, row):
        print(row, flush=True)
        super().append(row)


def timed(fn, repeats=3):
    fn()  # compile / warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        jax.block_until_ready(out)
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    rng = np.random.default_rng(0)
    x0 = jnp.asarray(rng.uniform(-1.5, 1.5, N))
    starts = jnp.asarray(rng.uniform(-1.5, 1.5, (BATCH, N)))
    jac = jax.jit(jax.grad(rosen))
    fun = jax.jit(rosen)
    rows = ProgressRows()

    # Newton is left out: a dense 1000x1000 Hessian and up to 64 damped Cholesky
    # factorizations per iteration make 500 iterations take minutes on 2 CPU cores.
    for method in ("lbfgs", "bfgs"):
        solve = jax.jit(lambda x: minimize(rosen, x, method=method, tol=TOL, maxiter=MAXITER))
        t, res = timed(lambda: solve(x0))
        rows.append({"solver": f"jaxopt_dl {method}", "batch": 1, "seconds": t,
                     "nit": int(res.nit), "fun": float(res.fun)})  # fmt: skip
    t, (x, count) = timed(lambda: jax.jit(optax_lbfgs_solve)(x0))
    rows.append({"solver": "optax.lbfgs", "batch": 1, "seconds": t, "nit": int(count),
                 "fun": float(rosen(x))})  # fmt: skip
    for name, opts in (("L-BFGS-B", {"gtol": TOL, "ftol": 1e-16}), ("BFGS", {"gtol": TOL})):
        t, ref = timed(lambda: so.minimize(fun, np.asarray(x0), jac=jac, method=name,
                                           options={**opts, "maxiter": MAXITER}), repeats=1)  # fmt: skip
        rows.append({"solver": f"scipy {name}", "batch": 1, "seconds": t, "nit": int(ref.nit),
                     "fun": float(ref.fun)})  # fmt: skip

    batched = jax.jit(jax.vmap(lambda x: minimize(rosen, x, method="lbfgs", tol=TOL,
                                                  maxiter=MAXITER)))  # fmt: skip
    t, res = timed(lambda: batched(starts), repeats=1)
    rows.append({"solver": "jaxopt_dl lbfgs (vmap)", "batch": BATCH, "seconds": t,
                 "nit": int(jnp.max(res.nit)), "fun": float(jnp.max(res.fun))})  # fmt: skip
    batched_optax = jax.jit(jax.vmap(optax_lbfgs_solve))
    t, (xs, counts) = timed(lambda: batched_optax(starts), repeats=1)
    rows.append({"solver": "optax.lbfgs (vmap)", "batch": BATCH, "seconds": t,
                 "nit": int(jnp.max(counts)), "fun": float(jnp.max(jax.vmap(rosen)(xs)))})  # fmt: skip
    start = time.perf_counter()
    nits, funs = [], []
    for s in np.asarray(starts):
        ref = so.minimize(fun, s, jac=jac, method="L-BFGS-B",
                          options={"gtol": TOL, "ftol": 1e-16, "maxiter": MAXITER})  # fmt: skip
        nits.append(ref.nit)
        funs.append(ref.fun)
    rows.append({"solver": "scipy L-BFGS-B (loop)", "batch": BATCH,
                 "seconds": time.perf_counter() - start, "nit": int(max(nits)),
                 "fun": float(max(funs))})  # fmt: skip

    out = pathlib.Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    meta = {"problem": f"extended Rosenbrock, n={N}, float64", "tol": TOL,
            "device": str(jax.devices()[0]), "jax": jax.__version__}  # fmt: skip
    (out / "second_order.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Second-order solvers: {meta['problem']}, grad tol {TOL}, {meta['device']}", "",
             "| solver | starts | wall time (s) | per solve (ms) | max nit | max f |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['solver']} | {r['batch']} | {r['seconds']:.3f} | "
                     f"{1e3 * r['seconds'] / r['batch']:.1f} | {r['nit']} | {r['fun']:.2e} |")  # fmt: skip
    table = "\n".join(lines) + "\n"
    (out / "second_order.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
