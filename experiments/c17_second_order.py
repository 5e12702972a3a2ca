"""Claim 17: second-order methods need far fewer evaluations than tuned first-order ones.

K. Bipin, "Deep Learning, Lecture 6 — Optimization":

    "Second-order methods are faster as they exploit the second derivative (curvature)"

Cost is counted in evaluations, not seconds: ``OptimizeResult.nfev`` / ``ngev`` (the
objective and gradient evaluations of ``jdl.minimize``, line-search trials included; for
``jdl.least_squares`` residual and Jacobian evaluations). Wall times of sub-millisecond
solves say nothing and are not read.

1. Rosenbrock (2-D) from 10 random starts in [-2, 2] x [-1, 3], stop at ||grad|| <= 1e-3:
   damped Newton, BFGS and L-BFGS against GD with Armijo backtracking and three first-order
   methods whose hyperparameters are tuned on 5 other starts (GD's lr, heavy ball's lr and
   beta, Adam's lr; x2 grids, the best inside the grid): the tuned setting minimises the
   mean log10 of gradient evaluations to the tolerance.
2. Curve fit y = a exp(-b t) + c (50 noisy points) from 10 random starts, stop at
   ||J^T r|| <= 1e-4: Levenberg-Marquardt against GD and Adam tuned the same way on
   0.5 ||r||^2.

The tuning runs every grid point at once (``vmap`` over settings and starts, ``lax.scan``
over steps, the first step at the tolerance recorded); the evaluation runs the library's
solvers (``vmap`` over starts) and reads their counts.

    python experiments/c17_second_order.py [--quick] [--out DIR]
"""

from __future__ import annotations

import _common
import jax
import jax.numpy as jnp
import numpy as np
from _common import plt

import jaxopt_dl as jdl

NAME = "c17_second_order"
CLAIM = 17
ENTRY = _common.criteria("c17")
TITLE = ENTRY["title"]
SEEDS = ("002",)
CRITERION = ENTRY["criterion"]
ROSEN_TOL, FIT_TOL = 1e-3, 1e-4
N_TUNE = 5
LR_GD = 2.0 ** np.arange(-16, -5)
LR_ADAM = 2.0 ** np.arange(-12, 5)
BETAS = 1.0 - 2.0 ** -np.arange(1, 8)  # 0.5, 0.75, ..., 0.992: 1 - beta on a x2 grid
FIRST_ORDER = {
    "GD (tuned lr)": lambda h: jdl.sgd(h[0]),
    "heavy ball (tuned lr, beta)": lambda h: jdl.momentum(h[0], h[1]),
    "Adam (tuned lr)": lambda h: jdl.adam(h[0]),
}


def grid(name: str, fit: bool) -> np.ndarray:
    """``(settings, 2)``: (lr, beta) grid of a first-order method (beta: heavy ball only)."""
    if name.startswith("heavy"):
        lr = LR_GD if not fit else 2.0 ** np.arange(-10, 1)
        return np.array([(a, b) for a in lr for b in BETAS])
    lr = LR_ADAM if name.startswith("Adam") else (LR_GD if not fit else 2.0 ** np.arange(-10, 1))
    return np.stack([lr, np.zeros_like(lr)], 1)


def evals_to_tol(fun, make_tx, settings, starts, steps: int, tol: float) -> np.ndarray:
    """Gradient evaluations until ||grad|| <= tol, ``(settings, starts)``; inf if never."""

    def one(h, x0):
        tx = make_tx(h)
        vg = jax.value_and_grad(fun)

        def step(carry, t):
            x, state, hit = carry
            _, g = vg(x)
            hit = jnp.where((hit < 0) & (jnp.linalg.norm(g) <= tol), t, hit)
            updates, state = tx.update(g, state, x)
            return (x + updates, state, hit), None

        init = (x0, tx.init(x0), jnp.asarray(-1, jnp.int32))
        (_, _, hit), _ = jax.lax.scan(step, init, jnp.arange(steps, dtype=jnp.int32))
        return hit

    hits = jax.jit(jax.vmap(jax.vmap(one, (None, 0)), (0, None)))(
        jnp.asarray(settings, jnp.float32), jnp.asarray(starts, jnp.float32)
    )
    hits = np.asarray(hits, np.float64)
    return np.where(hits >= 0, hits + 1, np.inf)


def tune(fun, name, fit, tune_starts, steps, tol):
    """(chosen setting, its index, the grid, per-setting mean log10 evals, edge flag)."""
    settings = grid(name, fit)
    ev = evals_to_tol(fun, FIRST_ORDER[name], settings, tune_starts, steps, tol)
    score = np.log10(np.where(np.isfinite(ev), ev, 10 * steps)).mean(1)
    i = int(np.argmin(score))
    lrs = np.unique(settings[:, 0])
    edge = settings[i, 0] in (lrs[0], lrs[-1])
    if name.startswith("heavy"):
        edge = edge or settings[i, 1] in (BETAS[0], BETAS[-1])
    return settings[i], i, settings, score, bool(edge)


def library_counts(solve, starts, cap: int) -> dict:
    """Counts of a vmapped library solve; a start that did not converge counts ``cap``."""
    res = jax.vmap(solve)(jnp.asarray(starts, jnp.float32))
    conv = np.asarray(res.converged)
    nfev = np.where(conv, np.asarray(res.nfev, np.float64), cap)
    ngev = np.where(conv, np.asarray(res.ngev, np.float64), cap)
    return dict(nfev=nfev, ngev=ngev, nit=np.asarray(res.nit), converged=conv, x=np.asarray(res.x))


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    steps = _common.pick(quick, smoke, 40000, 20000, 300)
    n_eval = _common.pick(quick, smoke, ENTRY["seeds"], ENTRY["seeds"], 3)
    n_tune = _common.pick(quick, smoke, N_TUNE, N_TUNE, 2)
    cap = steps + 1
    rng = np.random.default_rng(0)
    rosen_fun = jdl.data.rosenbrock(2).fun
    rosen_tune = rng.uniform([-2, -1], [2, 3], (n_tune, 2))
    rosen_eval = rng.uniform([-2, -1], [2, 3], (n_eval, 2))

    t = np.linspace(0.0, 4.0, 50).astype(np.float32)
    y = (2.5 * np.exp(-1.3 * t) + 0.5 + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)
    t, y = jnp.asarray(t), jnp.asarray(y)

    def residual(p):
        return p[0] * jnp.exp(-p[1] * t) + p[2] - y

    def half_sq(p):
        return 0.5 * jnp.sum(residual(p) ** 2)

    fit_tune = rng.uniform([0.5, 0.3, -1.0], [4.0, 3.0, 1.0], (n_tune, 3))
    fit_eval = rng.uniform([0.5, 0.3, -1.0], [4.0, 3.0, 1.0], (n_eval, 3))

    tuned, rosen, fit = {}, {}, {}
    for name in FIRST_ORDER:
        tuned[("rosen", name)] = tune(rosen_fun, name, False, rosen_tune, steps, ROSEN_TOL)
    for name in ("GD (tuned lr)", "Adam (tuned lr)"):
        tuned[("fit", name)] = tune(half_sq, name, True, fit_tune, steps, FIT_TOL)

    def minimize(fun, method, tol):
        return lambda x0: jdl.minimize(fun, x0, method=method, maxiter=steps, tol=tol)

    for label, method in (
        ("damped Newton", "newton"),
        ("BFGS", "bfgs"),
        ("L-BFGS (m = 10)", "lbfgs"),
        ("GD + backtracking", "gd"),
    ):
        rosen[label] = library_counts(minimize(rosen_fun, method, ROSEN_TOL), rosen_eval, cap)
    for name in FIRST_ORDER:
        h = tuned[("rosen", name)][0]
        rosen[name] = library_counts(
            minimize(rosen_fun, FIRST_ORDER[name](h), ROSEN_TOL), rosen_eval, cap
        )
    fit["Levenberg-Marquardt"] = library_counts(
        lambda x0: jdl.least_squares(residual, x0, maxiter=steps, tol=FIT_TOL), fit_eval, cap
    )
    fit["BFGS"] = library_counts(minimize(half_sq, "bfgs", FIT_TOL), fit_eval, cap)
    for name in ("GD (tuned lr)", "Adam (tuned lr)"):
        h = tuned[("fit", name)][0]
        fit[name] = library_counts(minimize(half_sq, FIRST_ORDER[name](h), FIT_TOL), fit_eval, cap)

    first = ["GD + backtracking", *FIRST_ORDER]
    second = ["damped Newton", "BFGS", "L-BFGS (m = 10)"]
    ratio = {
        m: _common.paired_ci(np.log10(rosen[m]["ngev"]), np.log10(rosen["BFGS"]["ngev"]))
        for m in first
    }
    lm_ratio = {
        m: _common.paired_ci(np.log10(fit[m]["ngev"]), np.log10(fit["Levenberg-Marquardt"]["ngev"]))
        for m in ("GD (tuned lr)", "Adam (tuned lr)")
    }
    all_conv = {m: int(rosen[m]["converged"].sum()) for m in second}
    lm_conv = int(fit["Levenberg-Marquardt"]["converged"].sum())
    verdicts = ["reproduced" if all_conv[m] == n_eval else "not reproduced" for m in second]
    verdicts.append("reproduced" if lm_conv == n_eval else "not reproduced")
    verdicts += [_common.judge(e, 1.0, "above") for e in ratio.values()]
    verdicts += [_common.judge(e, 1.0, "above") for e in lm_ratio.values()]
    verdict = _common.combine(verdicts)
    edges = [f"{p}/{n}" for (p, n), v in tuned.items() if v[4]]

    fig, axes = plt.subplots(1, 3, figsize=(18, 4.8))
    for ax, (rows, title) in zip(
        axes[:2], ((rosen, "Rosenbrock, ||g|| <= 1e-3"), (fit, "Curve fit, ||J^T r|| <= 1e-4"))
    ):
        names = list(rows)
        pos = np.arange(len(names))
        for key, color, off in (("nfev", "tab:blue", -0.2), ("ngev", "tab:orange", 0.2)):
            est = [_common.mean_ci(np.log10(rows[n][key])) for n in names]
            mid = np.array([10**e.mean for e in est])
            err = [mid - [10**e.lo for e in est], [10**e.hi for e in est] - mid]
            what = "objective" if key == "nfev" else "gradient (LM: Jacobian)"
            ax.bar(
                pos + off,
                mid,
                0.4,
                color=color,
                yerr=err,
                capsize=3,
                label=f"{what} evaluations (geometric mean of {n_eval} starts, 95% CI)",
            )
        ax.plot(pos, np.full(len(pos), cap), "k:", lw=1, label=f"cap {cap} = not converged")
        ax.set_xticks(pos, names, rotation=25, ha="right", fontsize=8)
        _common.finish_axes(
            ax, "method", "evaluations to the tolerance (count)", title, logy=True, legend_size=7
        )
        ax.set_ylim(1, cap * 3)
    for name, color in zip(FIRST_ORDER, ("tab:blue", "tab:green", "tab:red")):
        _, i, settings, score, _ = tuned[("rosen", name)]
        if name.startswith("heavy"):
            beta = settings[i, 1]
            keep = settings[:, 1] == beta
            label = f"{name}, beta {beta:.4g}"
        else:
            keep = np.ones(len(settings), bool)
            label = name
        axes[2].plot(settings[keep, 0], 10 ** score[keep], "o-", ms=3, color=color, label=label)
        axes[2].plot(settings[i, 0], 10 ** score[i], "*", ms=12, color=color)
    axes[2].plot(
        LR_ADAM,
        np.full(len(LR_ADAM), 10 * steps),
        "k:",
        lw=1,
        label=f"never converged (scored {10 * steps})",
    )
    _common.finish_axes(
        axes[2],
        "learning rate",
        "gradient evaluations (geometric mean)",
        f"Rosenbrock: tuning on {n_tune} starts (star: chosen)",
        logx=True,
        logy=True,
        legend_size=7,
    )
    fig.suptitle(
        f"Evaluations to converge, {n_eval} random starts per problem (first-order "
        "methods tuned on other starts)"
    )
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    measured = {}
    for m in second:
        measured[f"Rosenbrock {m}: converged"] = f"{all_conv[m]}/{n_eval}"
        measured[f"Rosenbrock {m}: gradient evaluations"] = _common.mean_ci(rosen[m]["ngev"])
    measured["Rosenbrock damped Newton: Hessian evaluations"] = _common.mean_ci(
        rosen["damped Newton"]["nit"]
    )
    for m in first:
        measured[f"Rosenbrock {m}: gradient evaluations"] = _common.mean_ci(rosen[m]["ngev"])
        measured[f"Rosenbrock log10(ngev {m} / ngev BFGS), paired"] = ratio[m]
    for (p, n), v in tuned.items():
        measured[f"{p} {n}: tuned (lr, beta)"] = f"({v[0][0]:.4g}, {v[0][1]:.4g})"
    measured["tuned settings at a grid edge"] = ", ".join(edges) if edges else "none"
    measured["fit Levenberg-Marquardt: converged"] = f"{lm_conv}/{n_eval}"
    for m in fit:
        measured[f"fit {m}: gradient evaluations"] = _common.mean_ci(fit[m]["ngev"])
    for m, e in lm_ratio.items():
        measured[f"fit log10(ngev {m} / Jacobians LM), paired"] = e
    gm = {m: 10 ** np.mean(np.log10(rosen[m]["ngev"])) for m in rosen}
    best_first = min(first, key=lambda m: gm[m])
    conclusion = (
        f"on Rosenbrock BFGS needs {gm['BFGS']:.0f} gradient evaluations (geometric mean), the "
        f"best tuned first-order method ({best_first}) {gm[best_first]:.0f}, "
        f"{gm[best_first] / gm['BFGS']:.0f}x more; on the curve fit LM needs "
        f"{10 ** np.mean(np.log10(fit['Levenberg-Marquardt']['ngev'])):.0f} Jacobians, tuned "
        f"Adam {10 ** np.mean(np.log10(fit['Adam (tuned lr)']['ngev'])):.0f} gradients"
    )
    theory = ""
    if verdict != "reproduced":
        theory = (
            "Near a minimum with Hessian condition number kappa, gradient descent at its best "
            "fixed rate contracts the error by (kappa - 1)/(kappa + 1) per step, heavy ball by "
            "(sqrt(kappa) - 1)/(sqrt(kappa) + 1), while Newton's method converges "
            "quadratically and BFGS superlinearly (Nocedal & Wright, ch. 3 and 6); a "
            "first-order method comes close only where kappa is small or the tolerance loose, "
            "and a count capped at maxiter bounds the ratio from below."
        )
    rows = []
    for problem, table in (("Rosenbrock", rosen), ("curve fit", fit)):
        for m, r in table.items():
            rows.append(
                {
                    "problem": problem,
                    "method": m,
                    "converged": f"{int(r['converged'].sum())}/{n_eval}",
                    "objective evaluations": _common.mean_ci(r["nfev"]),
                    "gradient evaluations": _common.mean_ci(r["ngev"]),
                    "iterations": _common.mean_ci(r["nit"]),
                }
            )
    tune_rows = [
        {
            "problem": p,
            "method": n,
            "chosen lr": float(v[0][0]),
            "chosen beta": float(v[0][1]),
            "at grid edge": v[4],
        }
        for (p, n), v in tuned.items()
    ]
    setup = (
        f"float32; cap {steps} steps (a start that does not converge counts {cap} "
        f"evaluations: a lower bound); Rosenbrock starts uniform in [-2, 2] x [-1, 3]; "
        f"curve fit: 50 points, t in [0, 4], a=2.5, b=1.3, c=0.5, noise 0.02, starts "
        f"uniform in [0.5, 4] x [0.3, 3] x [-1, 1]; {n_tune} tuning and {n_eval} "
        f"evaluation starts; lr grids x2, 1 - beta on a x2 grid 2^-1 .. 2^-7."
    )
    return _common.report(
        globals(),
        rows,
        out_dir,
        measured,
        figure,
        verdict,
        setup,
        conclusion,
        theory,
        extra_tables={"Tuned first-order settings": tune_rows},
    )


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
