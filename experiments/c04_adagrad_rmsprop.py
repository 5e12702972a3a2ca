"""Claim 4: AdaGrad's effective learning rate shrinks too early on a non-convex problem.

The Rosenbrock banana from (-1.2, 1) (non-convex; steep walls, then a long flat valley):
AdaGrad (``jdl.adagrad``, r <- r + g^2) keeps every squared gradient of the steep start
in its accumulator, RMSProp (``jdl.rmsprop``, decay 0.9) forgets them. Each method runs at
its best learning rate of a log grid (lowest final loss), the grid as one vmapped scan.
The effective learning rate lr / sqrt(r + delta) is recomputed from the gradients along
the path.

    python experiments/c04_adagrad_rmsprop.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c04_adagrad_rmsprop"
CLAIM = 4
TITLE = "AdaGrad's effective learning rate shrinks too early on a non-convex problem; RMSProp keeps moving"
SEEDS = ("000",)
W0 = (-1.2, 1.0)
DECAY = 0.9
ADAGRAD_R0, ADAGRAD_EPS, RMSPROP_EPS = 0.1, 1e-7, 1e-8
CRITERION = (
    "on Rosenbrock from (-1.2, 1), each method at its best lr of a log grid (lowest final loss "
    "after T steps): RMSProp's final loss < 0.1 x AdaGrad's, and AdaGrad's effective learning "
    "rate lr/sqrt(r + delta) (geometric mean over the 2 coordinates, averaged over the last 10% "
    "of steps) is < 0.1 x RMSProp's"
)

METHODS = {
    "AdaGrad": lambda lr: jdl.adagrad(lr, ADAGRAD_R0, ADAGRAD_EPS),
    "RMSProp": lambda lr: jdl.rmsprop(lr, DECAY, RMSPROP_EPS),
}


def effective_lr(name: str, lr: float, grads: np.ndarray) -> np.ndarray:
    """``lr / sqrt(acc_t + delta)`` per step and coordinate, accumulators as the lecture writes them."""
    sq = grads**2
    if name == "AdaGrad":
        acc = ADAGRAD_R0 + np.cumsum(sq, axis=0)
        return lr / np.sqrt(acc + ADAGRAD_EPS)
    acc = np.zeros_like(sq)
    v = np.zeros(sq.shape[1])
    for t in range(sq.shape[0]):
        v = DECAY * v + (1 - DECAY) * sq[t]
        acc[t] = v
    return lr / np.sqrt(acc + RMSPROP_EPS)


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    steps = _common.pick(quick, smoke, 10000, 4000, 200)
    lrs = np.logspace(-4, 0, _common.pick(quick, smoke, 33, 25, 5))
    surface = jdl.data.rosenbrock(2)
    keys = jax.random.split(jax.random.key(0), 1)
    found = {}
    for name, make in METHODS.items():
        ws = _common.toy_trajectories(make, lrs, lambda w, k: surface.grad(w), W0, steps, keys)
        ws = ws[:, 0]
        with np.errstate(over="ignore", invalid="ignore"):
            losses = np.asarray(jax.vmap(jax.vmap(surface.fun))(ws), np.float64)
        final = np.nan_to_num(losses[:, -1], nan=np.inf)
        best = int(np.argmin(final))
        path = np.asarray(ws[best], np.float64)
        grads = np.asarray(jax.vmap(surface.grad)(jnp.asarray(path[:-1])), np.float64)
        eff = np.exp(np.mean(np.log(effective_lr(name, lrs[best], grads)), axis=1))
        step_len = np.linalg.norm(np.diff(path, axis=0), axis=1)
        found[name] = dict(lr=lrs[best], losses=losses[best], final=final, path=path,
                           eff=eff, step=step_len)
    k = max(steps // 10, 1)
    ada, rms = found["AdaGrad"], found["RMSProp"]
    eff_ada, eff_rms = ada["eff"][-k:].mean(), rms["eff"][-k:].mean()
    loss_ada, loss_rms = ada["losses"][-1], rms["losses"][-1]
    reproduced = bool(loss_rms < 0.1 * loss_ada and eff_ada < 0.1 * eff_rms)

    colors = {"AdaGrad": "tab:orange", "RMSProp": "tab:purple"}
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    gx, gy = np.meshgrid(np.linspace(-2, 2, 200), np.linspace(-1, 3, 150))
    zz = np.asarray(jax.vmap(surface.fun)(jnp.stack([gx.ravel(), gy.ravel()], 1)))
    axes[0].contour(gx, gy, np.log10(zz.reshape(gx.shape) + 1e-3), levels=20, colors="0.8",
                    linewidths=0.5)
    axes[0].plot([1], [1], "k*", ms=10, label="minimum (1, 1)")
    t = np.arange(1, steps + 1)
    for name, color in colors.items():
        r = found[name]
        label = f"{name} (lr={r['lr']:.3g})"
        axes[0].plot(r["path"][:, 0], r["path"][:, 1], lw=0.8, color=color, label=label)
        axes[1].loglog(t, r["losses"][1:] + 1e-16, color=color, label=label)
        axes[2].loglog(t, r["eff"], color=color, label=label)
        axes[3].loglog(lrs, np.clip(r["final"], 1e-16, 1e6), "o-", ms=3, color=color,
                       label=name)
    axes[0].set_xlabel("w1")
    axes[0].set_ylabel("w2")
    axes[0].set_title("Rosenbrock paths at each method's best lr")
    axes[0].legend(fontsize=8)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("loss")
    axes[1].set_title("Loss")
    axes[1].legend(fontsize=8)
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("effective lr  lr / sqrt(acc + delta)")
    axes[2].set_title("Effective learning rate (geometric mean of coords)")
    axes[2].legend(fontsize=8)
    axes[3].set_xlabel("learning rate")
    axes[3].set_ylabel(f"loss after {steps} steps")
    axes[3].set_title("Learning-rate grid")
    axes[3].legend(fontsize=8)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    marks = sorted({10, steps // 10, steps // 2, steps})
    rows = [
        {"method": name, "best lr": r["lr"],
         **{f"loss @ {m}": r["losses"][m] for m in marks},
         **{f"eff. lr @ {m}": r["eff"][m - 1] for m in marks},
         "distance to (1,1) at end": float(np.linalg.norm(r["path"][-1] - 1.0))}
        for name, r in found.items()
    ]
    measured = {
        "AdaGrad best lr": ada["lr"], "RMSProp best lr": rms["lr"],
        "AdaGrad final loss": loss_ada, "RMSProp final loss": loss_rms,
        "AdaGrad eff. lr (last 10%)": eff_ada, "RMSProp eff. lr (last 10%)": eff_rms,
    }
    setup = f"exact gradients, {steps} steps, {len(lrs)} learning rates in [1e-4, 1] per method."
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup))
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
