"""Claim 6: gradient clipping keeps training stable at a cliff; without it a step jumps far.

``jdl.data.cliff()``: the bowl ||w||^2/2 with a wall 50x high at w1 = 1. Gradient descent
(lr 0.1) started on the wall, with and without ``jdl.clip_by_global_norm(1.0)`` in front
of ``jdl.sgd``; plus a sweep over start points on the wall (one vmapped lax.scan each).

    python experiments/c06_clipping_cliff.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c06_clipping_cliff"
CLAIM = 6
TITLE = "Gradient clipping keeps training stable at a cliff; without it a step jumps far"
SEEDS = ("000",)
LR, MAX_NORM = 0.1, 1.0
W0 = (1.0, 1.0)
CRITERION = (
    "GD (lr 0.1) from (1, 1) on the cliff's wall: without clipping the largest single step is "
    "> 10 x the start's distance to the minimum; with clip_by_global_norm(1) the iterate never "
    "gets farther from the minimum than it started and the final loss is < 1e-3"
)

METHODS = {
    "plain GD": jdl.sgd,
    f"GD + clip_by_global_norm({MAX_NORM})": lambda lr: jdl.chain(
        jdl.clip_by_global_norm(MAX_NORM), jdl.sgd(lr)
    ),
}


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    steps = _common.pick(quick, smoke, 200, 200, 60)
    n_starts = _common.pick(quick, smoke, 64, 32, 4)
    surface = jdl.data.cliff()
    key = jax.random.split(jax.random.key(0), 1)
    grad = lambda w, k: surface.grad(w)  # noqa: E731 - exact gradients
    starts = np.stack([np.full(n_starts, 1.0),
                       np.linspace(0.3, 1.5, n_starts)], 1).astype(np.float32)
    start_dist = float(np.linalg.norm(W0))
    found = {}
    for name, make in METHODS.items():
        path = np.asarray(_common.toy_trajectories(make, [LR], grad, W0, steps, key)[0, 0],
                          np.float64)
        sweep = np.asarray(jax.vmap(
            lambda w0, m=make: _common.toy_trajectories(m, [LR], grad, w0, steps, key)[0, 0]
        )(jnp.asarray(starts)), np.float64)
        jumps = np.linalg.norm(np.diff(path, axis=0), axis=1)
        found[name] = dict(
            path=path,
            losses=np.asarray(jax.vmap(surface.fun)(jnp.asarray(path))),
            max_jump=float(jumps.max()),
            max_dist=float(np.linalg.norm(path, axis=1).max()),
            sweep_jump=np.linalg.norm(np.diff(sweep, axis=1), axis=2).max(axis=1),
            sweep_dist=np.linalg.norm(sweep, axis=2).max(axis=1) / np.linalg.norm(starts, axis=1),
        )
    plain, clipped = found["plain GD"], found[f"GD + clip_by_global_norm({MAX_NORM})"]
    jumps_far = plain["max_jump"] > 10 * start_dist
    stable = clipped["max_dist"] <= start_dist + 1e-6 and clipped["losses"][-1] < 1e-3
    reproduced = bool(jumps_far and stable)

    colors = dict(zip(found, ("tab:red", "tab:green")))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    gx, gy = np.meshgrid(np.linspace(-30, 5, 300), np.linspace(-3, 3, 120))
    zz = np.asarray(jax.vmap(surface.fun)(jnp.stack([gx.ravel(), gy.ravel()], 1)))
    axes[0].contour(gx, gy, np.log10(zz.reshape(gx.shape) + 1e-3), levels=25, colors="0.8",
                    linewidths=0.5)
    for name, r in found.items():
        axes[0].plot(r["path"][:, 0], r["path"][:, 1], ".-", ms=3, lw=0.7,
                     color=colors[name], label=f"{name}: largest step {r['max_jump']:.3g}")
        axes[1].semilogy(r["losses"] + 1e-12, color=colors[name], label=name)
        axes[2].semilogy(starts[:, 1], r["sweep_jump"], "o-", ms=3, color=colors[name],
                         label=name)
    axes[0].plot(*W0, "k^", ms=8, label="start on the wall")
    axes[0].axvline(1.0, color="0.5", ls=":", lw=0.8)
    axes[0].set_xlabel("w1 (wall at w1 = 1)")
    axes[0].set_ylabel("w2")
    axes[0].set_title("Paths from the cliff's wall")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("loss")
    axes[1].set_title("Loss")
    axes[1].legend(fontsize=8)
    axes[2].set_xlabel("w2 of the start (w1 = 1, on the wall)")
    axes[2].set_ylabel("largest single step")
    axes[2].set_title(f"Largest step over {n_starts} starts on the wall")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [
        {"method": name, "largest step": r["max_jump"],
         "max distance to w*": r["max_dist"], "loss at start": r["losses"][0],
         "max loss on path": r["losses"].max(), "final loss": r["losses"][-1],
         "starts with a step > 10x start distance":
             f"{int(np.sum(r['sweep_jump'] > 10 * np.linalg.norm(starts, axis=1)))}/{n_starts}",
         "median max-distance / start distance (sweep)": float(np.median(r["sweep_dist"]))}
        for name, r in found.items()
    ]
    measured = {
        "start distance": start_dist,
        "plain: largest step": plain["max_jump"],
        "plain: max distance": plain["max_dist"],
        "clipped: largest step": clipped["max_jump"],
        "clipped: max distance": clipped["max_dist"],
        "clipped: final loss": clipped["losses"][-1],
        "plain: final loss": plain["losses"][-1],
    }
    setup = (f"cliff(height 50, sharpness 20, position 1), lr {LR}, {steps} steps from {W0}; "
             f"sweep: {n_starts} starts (1, w2), w2 in [0.3, 1.5].")
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup))
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
