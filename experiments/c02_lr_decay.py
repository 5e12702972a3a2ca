"""Claim 2: with noisy gradients a fixed lr stalls at a noise floor; 1/t decay keeps going.

K. Bipin, "Deep Learning, Lecture 6 — Optimization" (Robbins & Monro 1951):

    "Fixed learning rate (not a good idea: too slow in the beginning and fast in the end)
    [...] Inverse proportional decay: η_t = η/t (Robbins and Monro) [...] Remark: Due to
    stochasticity, a fixed learning rate η will never lead to convergence"

Setup: the lecture's quadratic L(w) = (0.1 w1)^2 + w2^2 with gradient noise N(0, 0.03^2),
started at (10, 1), away from w* = 0. SGD with a fixed rate, tuned over a x2 grid, against
``jdl.inverse_time_decay(η, 1/t0)`` = η / (1 + t/t0) (the lecture's η/t with an offset),
tuned jointly over η and t0. Settings are chosen on tuning seeds; the verdict reads fresh
noise seeds, paired (the same noise in both arms). One vmapped ``lax.scan`` per arm.

    python experiments/c02_lr_decay.py [--quick] [--out DIR]
"""

from __future__ import annotations

import itertools

import _common
import jax
import numpy as np
from _common import plt

import jaxopt_dl as jdl

NAME = "c02_lr_decay"
CLAIM = 2
ENTRY = _common.criteria("c02")
TITLE = ENTRY["title"]
SEEDS = ("002",)
CRITERION = ENTRY["criterion"]
W0 = (10.0, 1.0)
CURVATURES, NOISE_STD = (0.02, 2.0), 0.03  # of (0.1 w1)^2 + w2^2; the gradient noise


def floor(lr: float) -> float:
    """Stationary E|w - w*|^2 of SGD at a fixed ``lr``: sum of lr σ² / (h (2 - lr h))."""
    return float(sum(lr * NOISE_STD**2 / (h * (2 - lr * h)) for h in CURVATURES))


FIXED_LRS = 2.0 ** np.arange(-10, 1)
ETAS = 2.0 ** np.arange(-3, 2)
T0S = 2.0 ** np.arange(4, 13)
BAR_FINAL, BAR_SHRINK = np.log10(2.0), np.log10(1.5)


def decayed(params) -> jdl.GradientTransformation:
    """SGD with lr_t = eta / (1 + t / t0), ``params = (eta, t0)`` (traced)."""
    return jdl.sgd(jdl.inverse_time_decay(params[0], 1.0 / params[1], 1))


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    steps = _common.pick(quick, smoke, 5000, 5000, 400)
    n_seeds = _common.pick(quick, smoke, ENTRY["seeds"], ENTRY["seeds"], 3)
    surface = jdl.data.noisy_quadratic()
    tune_keys = jax.random.split(jax.random.key(2), n_seeds)
    eval_keys = jax.random.split(jax.random.key(1002), n_seeds)
    last = max(steps // 20, 1)
    half = steps // 2
    grid = np.array(list(itertools.product(ETAS, T0S)), np.float32)

    def sq_dist(make, params, keys):
        ws = np.asarray(
            _common.toy_trajectories(make, params, surface.noisy_grad, W0, steps, keys), np.float64
        )
        with np.errstate(over="ignore", invalid="ignore"):
            return np.nan_to_num(np.sum(ws**2, -1), nan=np.inf)  # (config, seed, t)

    def window(d, end):
        return d[..., end - last : end].mean(-1)

    with np.errstate(divide="ignore"):
        tune_fixed = np.log10(window(sq_dist(jdl.sgd, FIXED_LRS, tune_keys), steps + 1))
        tune_decay = np.log10(window(sq_dist(decayed, grid, tune_keys), steps + 1))
    best_fixed = int(np.argmin(tune_fixed.mean(1)))
    best_decay = int(np.argmin(tune_decay.mean(1)))
    d_fixed = sq_dist(jdl.sgd, FIXED_LRS[best_fixed : best_fixed + 1], eval_keys)[0]
    d_decay = sq_dist(decayed, grid[best_decay : best_decay + 1], eval_keys)[0]
    final = _common.paired_ci(
        np.log10(window(d_fixed, steps + 1)), np.log10(window(d_decay, steps + 1))
    )
    shrink = _common.mean_ci(
        np.log10(window(d_decay, half + 1)) - np.log10(window(d_decay, steps + 1))
    )
    fixed_shrink = _common.mean_ci(
        np.log10(window(d_fixed, half + 1)) - np.log10(window(d_fixed, steps + 1))
    )
    verdict = _common.combine(
        [
            _common.judge(final, BAR_FINAL, "above"),
            _common.judge(shrink, BAR_SHRINK, "above"),
            _common.judge(fixed_shrink, BAR_SHRINK, "below"),
        ]
    )
    eta, t0 = grid[best_decay]
    i_eta, i_t0 = list(ETAS).index(eta), list(T0S).index(t0)
    edges = []
    if best_fixed in (0, len(FIXED_LRS) - 1):
        edges.append("fixed lr")
    if i_eta in (0, len(ETAS) - 1):
        edges.append("decay η")
    if i_t0 in (0, len(T0S) - 1):
        edges.append("decay t0")

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    t = np.arange(steps + 1)
    lr_fixed = FIXED_LRS[best_fixed]
    _common.band(
        axes[0], t[1:], d_fixed[:, 1:], f"fixed lr {lr_fixed:g}", "tab:red", geometric=True
    )
    _common.band(
        axes[0], t[1:], d_decay[:, 1:], f"lr {eta:g} / (1 + t/{t0:g})", "tab:green", geometric=True
    )
    _common.finish_axes(
        axes[0],
        "SGD step",
        "squared distance to w*  |w_t - w*|^2",
        "Fresh noise seeds at the tuned settings",
        logx=True,
        logy=True,
    )
    est = [_common.mean_ci(row) for row in tune_fixed]
    axes[1].errorbar(
        FIXED_LRS,
        [e.mean for e in est],
        yerr=[[e.mean - e.lo for e in est], [e.hi - e.mean for e in est]],
        fmt="o-",
        ms=4,
        capsize=3,
        color="tab:red",
        label=f"fixed lr (mean of {n_seeds} tuning seeds, 95% CI)",
    )
    axes[1].plot(lr_fixed, tune_fixed[best_fixed].mean(), "k*", ms=12, label="chosen")
    _common.finish_axes(
        axes[1],
        "learning rate",
        f"log10 squared distance, last {last} steps",
        "Fixed-lr grid",
        logx=True,
        logy=False,
    )
    scores = tune_decay.mean(1).reshape(len(ETAS), len(T0S))
    for i, e in enumerate(ETAS):
        axes[2].plot(T0S, scores[i], "o-", ms=4, label=f"η = {e:g}")
    axes[2].plot(t0, scores[i_eta, i_t0], "k*", ms=12, label="chosen")
    _common.finish_axes(
        axes[2],
        "t0 (steps)",
        f"log10 squared distance, last {last} steps",
        f"1/t grid (mean of {n_seeds} tuning seeds)",
        logx=True,
        logy=False,
    )
    fig.suptitle(f"L = (0.1 w1)^2 + w2^2, gradient noise N(0, 0.03^2), from {W0}, {steps} steps")
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    measured = {
        "fixed: chosen lr": lr_fixed,
        "1/t: chosen η": float(eta),
        "1/t: chosen t0": float(t0),
        "fixed: squared distance (last 5%)": _common.positive_ci(window(d_fixed, steps + 1)),
        "1/t: squared distance (last 5%)": _common.positive_ci(window(d_decay, steps + 1)),
        "log10(D fixed / D 1/t), paired": final,
        "1/t: log10(D at T/2 / D at T)": shrink,
        "fixed: log10(D at T/2 / D at T)": fixed_shrink,
        "chosen setting at the grid's edge": ", ".join(edges) or "none",
        "fixed: D (last 5%) / its stationary floor (finding)": _common.positive_ci(
            window(d_fixed, steps + 1) / floor(lr_fixed)
        ),
    }
    conclusion = (
        f"from (10, 1), the tuned 1/t schedule ends 10^{final.mean:.2f} "
        f"[10^{final.lo:.2f}, 10^{final.hi:.2f}] times closer (squared distance) than the best "
        f"fixed lr and shrinks 10^{shrink.mean:.2f}x from T/2 to T; over the same half the "
        f"fixed lr {'stalls' if fixed_shrink.hi < BAR_SHRINK else 'still shrinks'} "
        f"(10^{fixed_shrink.mean:.2f}x)"
    )
    theory = ""
    if verdict != "reproduced":
        relax = 1 / (2 * lr_fixed * CURVATURES[0])
        theory = (
            f"At the fixed lr tuned for this horizon ({lr_fixed:g}) the slow coordinate "
            f"(curvature {CURVATURES[0]:g}) relaxes in about 1/(2ηh) = {relax:.0f} steps, so "
            f"the squared distance is still falling from the start over [T/2, T]; it reaches "
            f"its stationary floor ησ²/(h(2 - ηh)) only near T (measured D / floor = "
            f"{np.mean(window(d_fixed, steps + 1) / floor(lr_fixed)):.2f}). Tuning a fixed "
            "rate for a horizon puts the end of its transient near that horizon: the noise "
            "floor is real but a best-tuned fixed rate meets it only at the end. "
            "For SGD with a fixed rate η on a quadratic of curvature h and gradient noise σ², "
            "the iterate's stationary variance per coordinate is ησ²/(h(2 - ηh)): a floor that "
            "the best fixed η trades against the time (1/(ηh) steps) to forget the start. A "
            "schedule η/(1 + t/t0) with η t0 h > 1/2 brings the variance down like σ²/(h² t) "
            "(Robbins & Monro 1951; Bottou, Curtis & Nocedal 2018, Thm 4.7). On a horizon "
            "short against 1/(σ² h) the two end within a small factor of each other."
        )
    rows = [
        {
            "arm": "fixed",
            "lr / η": lr,
            "t0": "-",
            "tuning mean log10 D": float(tune_fixed[i].mean()),
        }
        for i, lr in enumerate(FIXED_LRS)
    ] + [
        {
            "arm": "1/t",
            "lr / η": float(e),
            "t0": float(s),
            "tuning mean log10 D": float(tune_decay[i].mean()),
        }
        for i, (e, s) in enumerate(grid)
    ]
    setup = (
        f"{steps} steps from {W0}; fixed lr {FIXED_LRS[0]:g} .. {FIXED_LRS[-1]:g} (x2); "
        f"1/t: η {ETAS[0]:g} .. {ETAS[-1]:g} x t0 {T0S[0]:g} .. {T0S[-1]:g} (x2 each); "
        f"{n_seeds} tuning and {n_seeds} evaluation noise seeds."
    )
    return _common.report(
        globals(), rows, out_dir, measured, figure, verdict, setup, conclusion, theory
    )


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
