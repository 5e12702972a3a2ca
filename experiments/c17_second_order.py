"""Claim 17: Newton, BFGS, L-BFGS and Levenberg-Marquardt versus first-order methods.

Two problems, every solve one compiled ``lax.while_loop`` (``jdl.minimize`` /
``jdl.least_squares``), timed on a second (already compiled) call:

1. Rosenbrock (2-D) from (-1.2, 1): gradient descent with Armijo backtracking, momentum,
   Adam, damped Newton, BFGS and L-BFGS; stop at ||grad|| <= 1e-3.
2. A curve fit y = a exp(-b t) + c (50 noisy points): Levenberg-Marquardt and Gauss-Newton
   (``jdl.least_squares``), BFGS, gradient descent and Adam on 0.5 ||r||^2; stop at
   ||J^T r|| <= 1e-4.

Iterations and seconds to converge are reported for each.

    python experiments/c17_second_order.py [--quick] [--out DIR]
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c17_second_order"
CLAIM = 17
TITLE = "Newton/BFGS/L-BFGS/LM versus first-order methods, in iterations and in seconds"
SEEDS = ("002",)
ROSEN_TOL, FIT_TOL = 1e-3, 1e-4
CRITERION = (
    "Rosenbrock from (-1.2, 1), tol ||g|| <= 1e-3: Newton, BFGS and L-BFGS converge in <= 100 "
    "iterations; GD (backtracking), momentum and Adam need >= 10x BFGS's iterations (maxiter "
    "if they do not converge), and BFGS takes less wall time than GD; curve fit "
    "a exp(-b t) + c, tol 1e-4: Levenberg-Marquardt converges in <= 50 iterations and Adam "
    "needs >= 10x as many"
)


def _timed(solve):
    """(result, best-of-5 seconds of the compiled call, after a first compiling call)."""
    res = jax.block_until_ready(solve())
    times = []
    for _ in range(5):
        start = time.perf_counter()
        res = jax.block_until_ready(solve())
        times.append(time.perf_counter() - start)
    return res, min(times)


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    maxiter = _common.pick(quick, smoke, 50000, 20000, 300)
    rosen = jdl.data.rosenbrock(2)
    x0 = jnp.array([-1.2, 1.0])
    rosen_methods = {
        "GD + backtracking": ("gd", {}),
        "momentum (1e-3, 0.9)": (jdl.momentum(1e-3, 0.9), {}),
        "Adam (1e-2)": (jdl.adam(1e-2), {}),
        "damped Newton": ("newton", {}),
        "BFGS": ("bfgs", {}),
        "L-BFGS (m = 10)": ("lbfgs", {}),
    }
    rosen_rows = {}
    for name, (method, opts) in rosen_methods.items():
        res, sec = _timed(lambda m=method, o=opts: jdl.minimize(
            rosen.fun, x0, method=m, maxiter=maxiter, tol=ROSEN_TOL, **o))
        rosen_rows[name] = dict(nit=int(res.nit), converged=bool(res.converged), seconds=sec,
                                f=float(res.fun), x=np.asarray(res.x))

    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 4.0, 50).astype(np.float32)
    y = (2.5 * np.exp(-1.3 * t) + 0.5 + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)
    t, y = jnp.asarray(t), jnp.asarray(y)
    residual = lambda p: p[0] * jnp.exp(-p[1] * t) + p[2] - y  # noqa: E731
    half_sq = lambda p: 0.5 * jnp.sum(residual(p) ** 2)  # noqa: E731
    p0 = jnp.array([1.0, 1.0, 0.0])
    adam = jdl.adam(1e-2)  # one object: the compiled solve is cached by the transform
    fit_solvers = {
        "Levenberg-Marquardt": lambda: jdl.least_squares(residual, p0, maxiter=maxiter,
                                                         tol=FIT_TOL),
        "Gauss-Newton": lambda: jdl.least_squares(residual, p0, method="gauss_newton",
                                                  maxiter=maxiter, tol=FIT_TOL),
        "BFGS": lambda: jdl.minimize(half_sq, p0, method="bfgs", maxiter=maxiter, tol=FIT_TOL),
        "GD + backtracking": lambda: jdl.minimize(half_sq, p0, method="gd", maxiter=maxiter,
                                                  tol=FIT_TOL),
        "Adam (1e-2)": lambda: jdl.minimize(half_sq, p0, method=adam, maxiter=maxiter,
                                            tol=FIT_TOL),
    }
    fit_rows = {}
    for name, solve in fit_solvers.items():
        res, sec = _timed(solve)
        fit_rows[name] = dict(nit=int(res.nit), converged=bool(res.converged), seconds=sec,
                              f=float(res.fun), x=np.asarray(res.x))

    def iters(r):
        return r["nit"] if r["converged"] else maxiter

    bfgs_it = iters(rosen_rows["BFGS"])
    second_ok = all(rosen_rows[m]["converged"] and rosen_rows[m]["nit"] <= 100
                    for m in ("damped Newton", "BFGS", "L-BFGS (m = 10)"))
    first_slow = all(iters(rosen_rows[m]) >= 10 * bfgs_it
                     for m in ("GD + backtracking", "momentum (1e-3, 0.9)", "Adam (1e-2)"))
    faster = rosen_rows["BFGS"]["seconds"] < rosen_rows["GD + backtracking"]["seconds"]
    lm = fit_rows["Levenberg-Marquardt"]
    lm_ok = lm["converged"] and lm["nit"] <= 50 and iters(fit_rows["Adam (1e-2)"]) >= 10 * lm["nit"]
    reproduced = bool(second_ok and first_slow and faster and lm_ok)

    fig, axes = plt.subplots(1, 3, figsize=(18, 4.6))
    for ax, (rows, title) in zip(axes[:2], ((rosen_rows, "Rosenbrock"), (fit_rows, "Curve fit"))):
        names = list(rows)
        pos = np.arange(len(names))
        ax.bar(pos - 0.2, [iters(rows[n]) for n in names], 0.4, color="tab:blue",
               label="iterations (maxiter if not converged)")
        ax.set_yscale("log")
        ax2 = ax.twinx()
        ax2.bar(pos + 0.2, [rows[n]["seconds"] * 1e3 for n in names], 0.4, color="tab:orange",
                label="milliseconds (compiled)")
        ax2.set_yscale("log")
        ax2.set_ylabel("wall time, ms")
        for a in (ax, ax2):  # both axes are checked for a title; same text, same place
            a.set_title(f"{title}: iterations and time to converge")
        ax.set_xticks(pos, names, rotation=25, ha="right", fontsize=8)
        ax.set_xlabel("method")
        ax.set_ylabel("iterations")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper right")
    axes[2].plot(np.asarray(t), np.asarray(y), "k.", label="data")
    for name in ("Levenberg-Marquardt", "Adam (1e-2)"):
        p = fit_rows[name]["x"]
        axes[2].plot(np.asarray(t), p[0] * np.exp(-p[1] * np.asarray(t)) + p[2],
                     label=f"{name}: a={p[0]:.3f}, b={p[1]:.3f}, c={p[2]:.3f}")
    axes[2].set_xlabel("t")
    axes[2].set_ylabel("y")
    axes[2].set_title("Curve fit a exp(-b t) + c")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    def table_rows(rows, problem):
        return [{"problem": problem, "method": n, "iterations": r["nit"],
                 "converged": r["converged"], "seconds (compiled)": r["seconds"],
                 "final objective": r["f"]} for n, r in rows.items()]

    measured = {f"Rosenbrock {n}: iterations": iters(r) for n, r in rosen_rows.items()}
    measured.update({f"fit {n}: iterations": iters(r) for n, r in fit_rows.items()})
    measured["Rosenbrock BFGS / GD seconds"] = (
        f"{rosen_rows['BFGS']['seconds']:.3g} / {rosen_rows['GD + backtracking']['seconds']:.3g}")
    setup = (f"float32; maxiter {maxiter}; Rosenbrock tol {ROSEN_TOL}; curve fit: 50 points, "
             f"t in [0, 4], a=2.5, b=1.3, c=0.5, noise 0.02, start (1, 1, 0), tol {FIT_TOL}; "
             f"seconds: best of 5 compiled calls.")
    table = _common.write_table(table_rows(rosen_rows, "Rosenbrock"), out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup),
                                extra_tables={"Curve fit": table_rows(fit_rows, "curve fit")})
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
