"""Claim 1: on seed 002's noisy quadratic, a too-small lr crawls, a too-large one diverges.

L(w) = (0.1 w1)^2 + w2^2 with gradient noise N(0, 0.03^2); plain SGD from w0 = (10, 1)
over a grid of learning rates, averaged over noise seeds (one vmapped lax.scan).

    python experiments/c01_learning_rate.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c01_learning_rate"
CLAIM = 1
TITLE = "Too small a learning rate crawls, too large diverges, a good one converges"
SEEDS = ("002",)
LRS = (0.01, 0.03, 0.1, 0.3, 0.6, 0.9, 1.0, 1.05, 1.1)
W0 = (10.0, 1.0)
CRITERION = (
    "after T steps of SGD (mean loss over noise seeds): the smallest lr of the grid (0.01) "
    "still has loss > 50% of the start loss (crawls), the largest (1.1 > 2/lambda_max = 1) "
    "has loss > the start loss (diverges), and the best lr of the grid has loss < 1% of the "
    "start loss (converges)"
)


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    steps = _common.pick(quick, smoke, 300, 300, 100)
    n_seeds = _common.pick(quick, smoke, 64, 32, 4)
    surface = jdl.data.noisy_quadratic()
    ws = _common.toy_trajectories(
        jdl.sgd, jnp.asarray(LRS), surface.noisy_grad, W0, steps,
        jax.random.split(jax.random.key(0), n_seeds),
    )
    losses = np.asarray(jax.vmap(jax.vmap(jax.vmap(surface.fun)))(ws))  # (lr, seed, t)
    with np.errstate(over="ignore", invalid="ignore"):
        mean_loss = losses.mean(axis=1)
    start = float(mean_loss[0, 0])
    final = mean_loss[:, -1]
    finite_final = np.where(np.isfinite(final), final, np.inf)
    best = int(np.argmin(finite_final))
    small, large = 0, len(LRS) - 1
    crawls = bool(final[small] > 0.5 * start)
    diverges = bool(not np.isfinite(final[large]) or final[large] > start)
    converges = bool(final[best] < 0.01 * start)
    reproduced = crawls and diverges and converges

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    grid = np.linspace(-12, 12, 200)
    g1, g2 = np.meshgrid(grid, np.linspace(-3, 3, 120))
    axes[0].contour(g1, g2, (0.1 * g1) ** 2 + g2**2, levels=15, colors="0.8", linewidths=0.6)
    for i, color in ((small, "tab:blue"), (best, "tab:green"), (large, "tab:red")):
        path = np.asarray(ws[i, 0])
        axes[0].plot(path[:, 0], path[:, 1], ".-", ms=2, lw=0.6, color=color,
                     label=f"lr={LRS[i]} (seed 0)")
        axes[1].semilogy(mean_loss[i], color=color, label=f"lr={LRS[i]}")
    axes[0].set_xlim(-12, 12)
    axes[0].set_ylim(-3, 3)
    axes[0].set_xlabel("w1")
    axes[0].set_ylabel("w2")
    axes[0].set_title("SGD paths on L = (0.1 w1)^2 + w2^2, noise N(0, 0.03)")
    axes[0].legend(fontsize=8)
    axes[1].axhline(start, color="0.5", ls=":", label="start loss")
    axes[1].set_ylim(1e-4, 1e4)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel(f"loss (mean of {n_seeds} noise seeds)")
    axes[1].set_title("Loss curves")
    axes[1].legend(fontsize=8)
    axes[2].loglog(LRS, np.clip(np.nan_to_num(final, nan=1e30), 1e-6, 1e30), "o-",
                   label=f"loss after {steps} steps")
    axes[2].axhline(start, color="0.5", ls=":", label="start loss")
    axes[2].axvline(1.0, color="tab:red", ls="--", lw=0.8, label="2 / lambda_max = 1")
    axes[2].set_ylim(1e-4, 1e6)
    axes[2].set_xlabel("learning rate")
    axes[2].set_ylabel("final loss")
    axes[2].set_title("Final loss over the learning-rate grid")
    axes[2].legend(fontsize=8)
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [
        {"learning rate": lr, f"loss at step {steps // 10}": mean_loss[i, steps // 10],
         f"loss at step {steps}": final[i],
         "role": {small: "too small", best: "best of grid", large: "too large"}.get(i, "")}
        for i, lr in enumerate(LRS)
    ]
    measured = {
        "start loss": start,
        "loss (lr=0.01)": final[small],
        "best lr": LRS[best],
        "loss (best lr)": final[best],
        "loss (lr=1.1)": final[large],
        "w1 left (lr=0.01, fraction of w1(0))": float(np.mean(ws[small, :, -1, 0])) / W0[0],
    }
    setup = f"SGD from w0 = {W0}, {steps} steps, {n_seeds} noise seeds, lr grid {LRS}."
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup))
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
