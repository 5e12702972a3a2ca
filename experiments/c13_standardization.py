"""Claim 13: standardizing the inputs speeds up training versus raw pixels.

The digits as raw pixel values 0..16, scaled to [0, 1], and standardized per pixel with the
training mean and standard deviation (``jdl.data.load_digits(standardize=...)``). The same
2x64 ReLU MLP is trained by plain SGD over a log grid of learning rates (one vmapped
``jdl.training.sweep`` per input scaling, 2 seeds); speed is the number of steps until the
running mean (window 20) of the minibatch loss drops below 0.3, at each scaling's best
learning rate.

    python experiments/c13_standardization.py [--quick] [--out DIR]
"""

from __future__ import annotations

import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c13_standardization"
CLAIM = 13
TITLE = "Input standardization speeds up training versus raw pixels"
SEEDS = ("001", "003")
LEVEL, WINDOW, BATCH = 0.3, 20, 32
CRITERION = (
    "2x64 ReLU MLP, plain SGD batch 32, lr grid 1e-4..1 (x3.16), mean of 2 seeds: at each "
    "input scaling's best lr, standardized inputs bring the running-mean (20 steps) training "
    "loss below 0.3 in fewer steps than raw 0..16 pixels, and end with a lower training loss"
)


def sgd(learning_rate):
    """The optimizer of every sweep (one function object: the sweeps share one program)."""
    return jdl.sgd(learning_rate)


def _smooth(curve: np.ndarray) -> np.ndarray:
    kernel = np.ones(WINDOW) / WINDOW
    return np.convolve(np.nan_to_num(curve, nan=1e3), kernel, mode="valid")


def _steps_below(curve: np.ndarray) -> float:
    hit = np.nonzero(_smooth(curve) < LEVEL)[0]
    return float(hit[0] + WINDOW) if hit.size else float("inf")


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    epochs = _common.pick(quick, smoke, 20, 8, 1)
    seeds = _common.pick(quick, smoke, [0, 1, 2], [0, 1], [0])
    n_train = _common.pick(quick, smoke, None, None, 256)
    lrs = np.logspace(-4, 0, _common.pick(quick, smoke, 9, 9, 3)).astype(np.float32)
    (raw_x, y), (raw_xt, yt) = jdl.data.load_digits(standardize=False)
    (std_x, _), (std_xt, _) = jdl.data.load_digits(standardize=True)
    inputs = {
        "raw pixels 0..16": (raw_x, raw_xt),
        "scaled to [0, 1]": (raw_x / 16.0, raw_xt / 16.0),
        "standardized": (std_x, std_xt),
    }
    model = jdl.models.MLP(hidden=(64, 64))
    found = {}
    for name, (x, xt) in inputs.items():
        x, ytr = np.asarray(x[:n_train], np.float32), y[:n_train]
        res = jdl.training.sweep(sgd, {"learning_rate": lrs}, seeds, model, (x, ytr), epochs=epochs,
                                 batch_size=BATCH, val_data=(np.asarray(xt, np.float32), yt))
        curves = np.mean(res.step_loss, axis=1)  # (lrs, steps); NaN stays NaN
        speed = np.array([_steps_below(c) for c in curves])
        final = np.nan_to_num(np.nanmean(res.train_loss[..., -1], axis=1), nan=np.inf)
        best = int(np.argmin(speed)) if np.isfinite(speed).any() else int(np.argmin(final))
        found[name] = dict(curve=curves[best], speed=speed, final=final, best=best,
                           acc=np.nanmean(res.val_accuracy[..., -1], axis=1))
    std, raw = found["standardized"], found["raw pixels 0..16"]
    reproduced = bool(std["speed"][std["best"]] < raw["speed"][raw["best"]]
                      and std["final"].min() < raw["final"].min())

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    for (name, r), color in zip(found.items(), ("tab:red", "tab:orange", "tab:green")):
        axes[0].semilogy(_smooth(r["curve"]), color=color,
                         label=f"{name}, lr {lrs[r['best']]:.3g}")
        axes[1].loglog(lrs, np.minimum(r["speed"], 1e5), "o-", color=color, label=name)
    axes[0].axhline(LEVEL, color="0.5", ls=":", label=f"loss {LEVEL}")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel(f"training loss (running mean of {WINDOW})")
    axes[0].set_title("Training curves at each scaling's best lr")
    axes[0].legend(fontsize=8)
    axes[1].set_xlabel("learning rate")
    axes[1].set_ylabel(f"steps to loss < {LEVEL} (1e5 = never)")
    axes[1].set_title("Speed across the lr grid")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [{"inputs": name, "best lr": float(lrs[r["best"]]),
             f"steps to loss < {LEVEL}": r["speed"][r["best"]],
             "best final train loss": float(r["final"].min()),
             "test accuracy at best lr": r["acc"][r["best"]]} for name, r in found.items()]
    measured = {f"{name}: steps": r["speed"][r["best"]] for name, r in found.items()}
    measured.update({f"{name}: final loss": float(r["final"].min()) for name, r in found.items()})
    setup = (f"digits ({len(y[:n_train])} train / {len(yt)} test), MLP (64, 64) ReLU, plain SGD "
             f"batch {BATCH}, {epochs} epochs, seeds {list(seeds)}, lrs "
             f"{np.round(lrs, 5).tolist()}.")
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup))
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
