"""Claim 2: started at the optimum, fixed-lr SGD keeps wandering; 1/t decay converges.

Seed 002's noisy quadratic L(w) = (0.1 w1)^2 + w2^2, gradient noise N(0, 0.03^2), w0 = w*
= 0. SGD with a fixed lr versus ``jdl.inverse_time_decay(lr, 1, 1)`` = lr / (1 + t) (the
lecture's eta / t), the same noise for both, many noise seeds in one vmapped lax.scan.

    python experiments/c02_lr_decay.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c02_lr_decay"
CLAIM = 2
TITLE = "Started at the optimum, fixed-lr SGD keeps wandering; 1/t decay converges"
SEEDS = ("002",)
LR = 0.5
CRITERION = (
    "over noise seeds, from w0 = w* = 0: fixed-lr SGD's mean step length over the last 10% of "
    "steps is >= 0.5x that over the first 10% (it keeps wandering), while with lr/(1+t) the "
    "last-10% step length is < 1% of the fixed-lr one and the RMS distance to w* at the end is "
    "< 1/3 of the fixed-lr one"
)


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    steps = _common.pick(quick, smoke, 5000, 2000, 200)
    n_seeds = _common.pick(quick, smoke, 128, 64, 4)
    surface = jdl.data.noisy_quadratic()
    keys = jax.random.split(jax.random.key(2), n_seeds)
    w0 = jnp.zeros(2)
    fixed = _common.toy_trajectories(jdl.sgd, jnp.asarray([LR]), surface.noisy_grad, w0,
                                     steps, keys)[0]
    decayed = _common.toy_trajectories(
        lambda lr: jdl.sgd(jdl.inverse_time_decay(lr, 1.0, 1)),
        jnp.asarray([LR]), surface.noisy_grad, w0, steps, keys,
    )[0]

    def stats(ws):
        ws = np.asarray(ws, np.float64)  # (seed, t, 2)
        rms = np.sqrt(np.mean(np.sum(ws**2, -1), axis=0))
        step = np.mean(np.linalg.norm(np.diff(ws, axis=1), axis=-1), axis=0)
        return rms, step

    rms_f, step_f = stats(fixed)
    rms_d, step_d = stats(decayed)
    k = max(steps // 10, 1)
    first_f, last_f, last_d = step_f[:k].mean(), step_f[-k:].mean(), step_d[-k:].mean()
    wanders = bool(last_f >= 0.5 * first_f)
    settles = bool(last_d < 0.01 * last_f and rms_d[-1] < rms_f[-1] / 3)
    reproduced = wanders and settles

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ws, color, label in ((fixed, "tab:red", f"fixed lr={LR}"),
                             (decayed, "tab:green", f"lr={LR}/(1+t)")):
        path = np.asarray(ws[0])
        axes[0].plot(path[:, 0], path[:, 1], lw=0.4, color=color, label=f"{label} (seed 0)")
    axes[0].plot([0], [0], "k*", ms=12, label="optimum = start")
    axes[0].set_xlabel("w1")
    axes[0].set_ylabel("w2")
    axes[0].set_title("One SGD path started at the optimum")
    axes[0].legend(fontsize=8)
    t = np.arange(1, steps + 1)
    axes[1].loglog(t, rms_f[1:], color="tab:red", label=f"fixed lr={LR}")
    axes[1].loglog(t, rms_d[1:], color="tab:green", label=f"lr={LR}/(1+t)")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel(f"RMS ||w - w*|| over {n_seeds} seeds")
    axes[1].set_title("Distance from the optimum")
    axes[1].legend(fontsize=8)
    axes[2].loglog(t, step_f, color="tab:red", label=f"fixed lr={LR}")
    axes[2].loglog(t, step_d, color="tab:green", label=f"lr={LR}/(1+t)")
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("mean step length ||w_{t+1} - w_t||")
    axes[2].set_title("Step length (wandering)")
    axes[2].legend(fontsize=8)
    figure = _common.save_figure(fig, out_dir, NAME)

    marks = sorted({1, 10, steps // 10, steps // 2, steps})
    rows = [
        {"step": m, "RMS dist (fixed)": rms_f[m], "RMS dist (1/t)": rms_d[m],
         "step length (fixed)": step_f[m - 1], "step length (1/t)": step_d[m - 1]}
        for m in marks
    ]
    measured = {
        "fixed: step length first 10%": first_f,
        "fixed: step length last 10%": last_f,
        "1/t: step length last 10%": last_d,
        "fixed: RMS dist at end": rms_f[-1],
        "1/t: RMS dist at end": rms_d[-1],
    }
    setup = f"SGD from w* = 0, {steps} steps, {n_seeds} noise seeds, lr = {LR}."
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup))
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
