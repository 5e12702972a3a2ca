"""Claim 13: standardized inputs train faster than raw pixels, each at its own tuned lr.

"Deep Learning Note 2 — Part 2: Optimization" (notes on Andrew Ng's Deep Learning
Specialization, Course 2; R. Neychev, "Optimization and regularization in Deep Learning",
"Data normalization"):

    "The advantage of normalization is that it makes it easier to optimize the cost
    function (in the way that we can supply a larger step size/learning rate to speed up
    the convergence)."

Setup: the digits as raw pixel values 0..16, scaled to [0, 1], and standardized per
pixel with the training mean and standard deviation (``jdl.data.load_digits(standardize=
...)``). The same 2x64 ReLU MLP is trained by plain SGD (batch 32) over a x2 grid of
learning rates, one vmapped ``jdl.training.sweep`` per scaling over the grid and all
seeds; speed is the number of steps until the running mean (20 steps) of the minibatch
loss falls below 0.3. The rate is chosen on tuning seeds, the verdict reads fresh seeds,
paired (the same initialisation and batches for every scaling).

    python experiments/c13_standardization.py [--quick] [--out DIR]
"""

from __future__ import annotations

import _common
import numpy as np
from _common import plt

import jaxopt_dl as jdl

NAME = "c13_standardization"
CLAIM = 13
ENTRY = _common.criteria("c13")
TITLE = ENTRY["title"]
SEEDS = ("001", "003")
CRITERION = ENTRY["criterion"]
LEVEL, WINDOW, BATCH = 0.3, 20, 32
LRS = 2.0 ** np.arange(-14, 1)
N_TUNE = 5


def sgd(learning_rate):
    """The optimizer of every sweep (one function object: the sweeps share one program)."""
    return jdl.sgd(learning_rate)


def _smooth(curves: np.ndarray) -> np.ndarray:
    """Running mean over WINDOW steps along the last axis (NaN counts as a huge loss)."""
    c = np.cumsum(np.nan_to_num(curves, nan=1e3, posinf=1e3), axis=-1)
    c = np.concatenate([np.zeros(c.shape[:-1] + (1,)), c], axis=-1)
    return (c[..., WINDOW:] - c[..., :-WINDOW]) / WINDOW


def _steps_below(curves: np.ndarray) -> np.ndarray:
    """Steps until the running mean falls below LEVEL; the run's length + WINDOW if never."""
    hit = _smooth(curves) < LEVEL
    return np.where(hit.any(-1), np.argmax(hit, -1) + WINDOW, curves.shape[-1] + WINDOW).astype(
        float
    )


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    epochs = _common.pick(quick, smoke, 20, 8, 4)
    n_eval = _common.pick(quick, smoke, ENTRY["seeds"], ENTRY["seeds"], 2)
    n_tune = _common.pick(quick, smoke, N_TUNE, N_TUNE, 1)
    n_train = _common.pick(quick, smoke, None, None, 256)
    lrs = (LRS if not smoke else LRS[::5]).astype(np.float32)
    seeds = list(range(100, 100 + n_tune)) + list(range(n_eval))
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
        res = jdl.training.sweep(
            sgd,
            {"learning_rate": lrs},
            seeds,
            model,
            (x, ytr),
            epochs=epochs,
            batch_size=BATCH,
            val_data=(np.asarray(xt, np.float32), yt),
        )
        speed = _steps_below(np.asarray(res.step_loss, np.float64))  # (lr, seed)
        final = np.nan_to_num(np.asarray(res.train_loss[..., -1], np.float64), nan=np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.log10(speed[:, :n_tune]).mean(1) + 1e-6 * np.log10(final[:, :n_tune]).mean(1)
        best = int(np.argmin(np.nan_to_num(score, nan=np.inf)))
        found[name] = dict(
            best=best,
            speed=speed[best, n_tune:],
            final=final[best, n_tune:],
            tune=speed[:, :n_tune],
            curves=_smooth(res.step_loss[best, n_tune:]),
            edge=best in (0, len(lrs) - 1),
        )
    std, raw = found["standardized"], found["raw pixels 0..16"]
    faster = _common.paired_ci(np.log10(raw["speed"]), np.log10(std["speed"]))
    lower = _common.paired_ci(np.log10(raw["final"]), np.log10(std["final"]))
    verdict = _common.combine(
        [_common.judge(faster, 0.0, "above"), _common.judge(lower, 0.0, "above")]
    )

    fig, axes = plt.subplots(1, 2, figsize=(14, 4.6))
    colors = dict(zip(found, ("tab:red", "tab:orange", "tab:green")))
    for name, r in found.items():
        t = np.arange(WINDOW, WINDOW + r["curves"].shape[-1])
        _common.band(
            axes[0],
            t,
            r["curves"],
            f"{name}, lr {lrs[r['best']]:.3g}",
            colors[name],
            geometric=True,
        )
        est = [_common.mean_ci(np.log10(row)) for row in r["tune"]]
        axes[1].errorbar(
            lrs,
            [10**e.mean for e in est],
            yerr=[[10**e.mean - 10**e.lo for e in est], [10**e.hi - 10**e.mean for e in est]],
            fmt="o-",
            ms=3,
            capsize=2,
            color=colors[name],
            label=f"{name} ({n_tune} tuning seeds, geometric mean, 95% CI)",
        )
    axes[0].plot(
        [WINDOW, WINDOW + found[name]["curves"].shape[-1]],
        [LEVEL, LEVEL],
        "k:",
        label=f"loss {LEVEL}",
    )
    _common.finish_axes(
        axes[0],
        "SGD step",
        f"training loss, running mean of {WINDOW} (nats)",
        f"{n_eval} fresh seeds at each scaling's tuned lr",
        logy=True,
        legend_size=7,
    )
    _common.finish_axes(
        axes[1],
        "learning rate",
        f"steps to loss < {LEVEL} (cap = never)",
        "Tuning each scaling's lr",
        logx=True,
        logy=True,
        legend_size=7,
    )
    fig.suptitle(f"Digits, MLP (64, 64) ReLU, SGD batch {BATCH}, {epochs} epochs")
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [
        {
            "inputs": name,
            "tuned lr": float(lrs[r["best"]]),
            f"steps to loss < {LEVEL}": _common.mean_ci(r["speed"]),
            "final training loss": _common.mean_ci(r["final"]),
        }
        for name, r in found.items()
    ]
    measured = {}
    for name, r in found.items():
        measured[f"{name}: tuned lr"] = float(lrs[r["best"]])
        measured[f"{name}: steps"] = _common.mean_ci(r["speed"])
        measured[f"{name}: final training loss"] = _common.mean_ci(r["final"])
    measured["log10(steps raw / standardized), paired"] = faster
    measured["log10(final loss raw / standardized), paired"] = lower
    measured["tuned lr at the grid's edge"] = (
        ", ".join(n for n, r in found.items() if r["edge"]) or "none"
    )
    conclusion = (
        f"each at its tuned lr, standardized inputs reach loss {LEVEL} in "
        f"{np.mean(std['speed']):.0f} steps vs {np.mean(raw['speed']):.0f} for raw pixels "
        f"(ratio 10^{faster.mean:.2f} [10^{faster.lo:.2f}, 10^{faster.hi:.2f}]) and end "
        f"10^{lower.mean:.2f} lower"
    )
    theory = ""
    if verdict != "reproduced":
        theory = (
            "Standardizing the inputs improves the conditioning of the first layer's Hessian "
            "(its curvature scales with the inputs' second moments, so features of very "
            "different scale or a large common mean give a large condition number; LeCun et "
            "al. 1998, 'Efficient BackProp'). With the lr tuned per scaling and raw digits "
            "whose pixels share one range (0..16), much of the gain is a rescaling that the "
            "tuned lr absorbs; what remains is the mean offset, which a bias and a few steps "
            "remove, so the difference can fall inside the seeds' noise."
        )
    setup = (
        f"digits ({len(y[:n_train])} train), MLP (64, 64) ReLU, plain SGD batch {BATCH}, "
        f"{epochs} epochs, lr grid {lrs[0]:g} .. {lrs[-1]:g} (x2), {n_tune} tuning and "
        f"{n_eval} evaluation seeds."
    )
    return _common.report(
        globals(), rows, out_dir, measured, figure, verdict, setup, conclusion, theory
    )


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
