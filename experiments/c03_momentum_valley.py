"""Claim 3: momentum crosses an ill-conditioned valley in far fewer steps than SGD.

Two valleys with exact gradients: seed 002's quadratic L = (0.1 w1)^2 + w2^2 (condition
number 100) from (10, 1), and the Rosenbrock banana from (-1.2, 1). For SGD, momentum
(Goodfellow Alg. 8.2, beta = 0.9) and Nesterov momentum (Alg. 8.3, beta = 0.9) the
learning rate is each one's best of a log grid (fewest steps to the threshold); the whole
grid runs as one vmapped lax.scan per method.

    python experiments/c03_momentum_valley.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c03_momentum_valley"
CLAIM = 3
TITLE = "Momentum crosses an ill-conditioned valley in far fewer steps than SGD; Nesterov beats it"
SEEDS = ("000", "002")
BETA = 0.9
THRESHOLD = 1e-4
CRITERION = (
    "steps until loss - min stays below 1e-4 x (start loss - min) to the end of the run, each method at its best lr of a log "
    "grid (a run that never gets there counts as cap+1): on both the quadratic and Rosenbrock, "
    "momentum needs <= 1/3 of SGD's steps, and Nesterov needs fewer steps than momentum"
)

METHODS = {
    "SGD": jdl.sgd,
    "momentum": lambda lr: jdl.momentum(lr, BETA),
    "Nesterov": lambda lr: jdl.momentum(lr, BETA, nesterov=True),
}


def problems(n_lr: int):
    quadratic = jdl.data.noisy_quadratic(0.0)
    rosen = jdl.data.rosenbrock(2)
    return {
        "quadratic": (quadratic, (10.0, 1.0), np.logspace(-3, np.log10(2.0), n_lr)),
        "rosenbrock": (rosen, (-1.2, 1.0), np.logspace(-5, -1.5, n_lr)),
    }


def steps_to_threshold(losses: np.ndarray, target: float, stay: bool = True) -> np.ndarray:
    """Steps until ``loss < target`` per row; ``inf`` where never (NaN counts as never).

    With ``stay`` the first step from which the loss stays below ``target`` to the end of
    the run (an oscillating run that dips below once has not crossed the valley);
    otherwise the first step below it.
    """
    hit = np.nan_to_num(losses, nan=np.inf) < target
    if stay:
        hit = np.flip(np.logical_and.accumulate(np.flip(hit, -1), axis=-1), -1)
    first = np.argmax(hit, axis=-1).astype(float)
    return np.where(hit.any(axis=-1), first, np.inf)


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    cap = _common.pick(quick, smoke, 10000, 4000, 300)
    n_lr = _common.pick(quick, smoke, 40, 30, 6)
    keys = jax.random.split(jax.random.key(0), 1)
    found = {}
    for pname, (surface, w0, lrs) in problems(n_lr).items():
        start = float(surface.fun(jnp.asarray(w0)))
        target = surface.min_value + THRESHOLD * (start - surface.min_value)
        grad = lambda w, k, s=surface: s.grad(w)  # noqa: E731 - exact gradients
        for mname, make in METHODS.items():
            ws = _common.toy_trajectories(make, lrs, grad, w0, cap, keys)[:, 0]
            with np.errstate(over="ignore", invalid="ignore"):
                losses = np.asarray(jax.vmap(jax.vmap(surface.fun))(ws), np.float64)
            steps = steps_to_threshold(losses, target)
            best = int(np.argmin(steps))
            first_hit = steps_to_threshold(losses[best], target, stay=False)
            found[pname, mname] = dict(lrs=lrs, steps=steps, best=best, losses=losses[best],
                                       path=np.asarray(ws[best]), start=start,
                                       first_hit=first_hit)

    def n(p, m):
        s = found[p, m]["steps"][found[p, m]["best"]]
        return cap + 1 if not np.isfinite(s) else int(s)

    momentum_fast = all(n(p, "momentum") <= n(p, "SGD") / 3 for p in ("quadratic", "rosenbrock"))
    nesterov_faster = all(n(p, "Nesterov") < n(p, "momentum") for p in ("quadratic", "rosenbrock"))
    reproduced = momentum_fast and nesterov_faster

    colors = {"SGD": "tab:red", "momentum": "tab:blue", "Nesterov": "tab:green"}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for row, pname in enumerate(("quadratic", "rosenbrock")):
        surface = problems(2)[pname][0]
        xs = np.linspace(-12, 12, 200) if pname == "quadratic" else np.linspace(-2, 2, 200)
        ys = np.linspace(-3, 3, 120) if pname == "quadratic" else np.linspace(-1, 3, 120)
        gx, gy = np.meshgrid(xs, ys)
        zz = np.asarray(jax.vmap(surface.fun)(jnp.stack([gx.ravel(), gy.ravel()], 1)))
        axes[row, 0].contour(gx, gy, np.log10(zz.reshape(gx.shape) + 1e-3), levels=20,
                             colors="0.8", linewidths=0.5)
        for mname, color in colors.items():
            r = found[pname, mname]
            label = f"{mname} (lr={r['lrs'][r['best']]:.3g}, {_common.fmt(n(pname, mname))} steps)"
            path = r["path"][: n(pname, mname) + 1]
            axes[row, 0].plot(path[:, 0], path[:, 1], lw=0.8, color=color, label=label)
            axes[row, 1].semilogy(r["losses"] - surface.min_value + 1e-12, color=color,
                                  label=label)
            steps = np.where(np.isfinite(r["steps"]), r["steps"], np.nan)
            axes[row, 2].loglog(r["lrs"], steps, "o-", ms=3, color=color, label=mname)
        axes[row, 0].set_xlim(xs[0], xs[-1])
        axes[row, 0].set_ylim(ys[0], ys[-1])
        axes[row, 0].set_xlabel("w1")
        axes[row, 0].set_ylabel("w2")
        axes[row, 0].set_title(f"{pname}: paths at each method's best lr")
        axes[row, 0].legend(fontsize=7)
        target = THRESHOLD * (found[pname, "SGD"]["start"] - surface.min_value)
        axes[row, 1].axhline(target, color="0.5", ls=":", label="threshold")
        axes[row, 1].set_ylim(1e-8, None)
        axes[row, 1].set_xlabel("step")
        axes[row, 1].set_ylabel("loss - min")
        axes[row, 1].set_title(f"{pname}: loss at each method's best lr")
        axes[row, 1].legend(fontsize=7)
        axes[row, 2].axhline(cap, color="0.5", ls=":", label=f"cap = {cap}")
        axes[row, 2].set_xlabel("learning rate")
        axes[row, 2].set_ylabel("steps to threshold (missing: never)")
        axes[row, 2].set_title(f"{pname}: learning-rate grid")
        axes[row, 2].legend(fontsize=7)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = []
    measured = {}
    for (pname, mname), r in found.items():
        steps = n(pname, mname)
        shown = f">{cap}" if steps > cap else steps
        rows.append({"problem": pname, "method": mname, "best lr": r["lrs"][r["best"]],
                     "steps to stay below threshold": shown,
                     "first step below it": r["first_hit"],
                     "final loss - min": r["losses"][-1] - problems(2)[pname][0].min_value})
        measured[f"{pname}: {mname} steps"] = shown
    setup = (f"exact gradients, beta = {BETA}, {n_lr} learning rates per method, at most {cap} "
             "steps; quadratic from (10, 1), Rosenbrock from (-1.2, 1).")
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup))
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
