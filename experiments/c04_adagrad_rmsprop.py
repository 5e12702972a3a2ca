"""Claim 4: on a noisy non-convex problem AdaGrad's shrinking rate stops it early.

J. Petersen, "Optimization in Deep Learning" (after Goodfellow, Bengio & Courville,
*Deep Learning*, Sec. 8.5.1-8.5.2; Duchi et al. 2011 for AdaGrad):

    "Adagrad was designed to converge fast with convex functions, but with nonconvex
    functions, one may need to pass through many structures with varying gradients. The
    shrinking of the learning rate based on sum of the history of the computed gradients
    squared may lead to stopping too early. RMSProp discards the extreme past to avoid
    this issue."

Setup: the Rosenbrock banana from (-1.2, 1) (steep walls, then a long flat curved valley)
with gradient noise N(0, 1) at every step, so AdaGrad's accumulator keeps growing over the
whole run (with exact gradients it would freeze once the gradients vanish). ``jdl.adagrad``
and ``jdl.rmsprop`` (decay 0.9) are each tuned over a x2 learning-rate grid on tuning
seeds; the verdict reads fresh noise seeds, paired. One compiled program per method
(``vmap`` over learning rates and seeds, ``lax.scan`` over steps).

    python experiments/c04_adagrad_rmsprop.py [--quick] [--out DIR]
"""

from __future__ import annotations

import _common
import jax
import numpy as np
from _common import plt

import jaxopt_dl as jdl

NAME = "c04_adagrad_rmsprop"
CLAIM = 4
ENTRY = _common.criteria("c04")
TITLE = ENTRY["title"]
SEEDS = ("000",)
CRITERION = ENTRY["criterion"]
W0 = (-1.2, 1.0)
NOISE, DECAY = 1.0, 0.9
LRS = 2.0 ** np.arange(-14, 3)
N_TUNE = 5
BAR = np.log10(2.0)

METHODS = {
    "AdaGrad": jdl.adagrad,
    f"RMSProp (decay {DECAY})": lambda lr: jdl.rmsprop(lr, DECAY),
}


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    steps = _common.pick(quick, smoke, 20000, 10000, 400)
    n_eval = _common.pick(quick, smoke, ENTRY["seeds"], ENTRY["seeds"], 3)
    n_tune = _common.pick(quick, smoke, N_TUNE, N_TUNE, 2)
    surface = jdl.data.rosenbrock(2)
    grad = lambda w, k: surface.noisy_grad(w, k, NOISE)  # noqa: E731
    tune_keys = jax.random.split(jax.random.key(4), n_tune)
    eval_keys = jax.random.split(jax.random.key(1004), n_eval)
    tail = max(steps // 10, 1)
    f_all = jax.jit(jax.vmap(jax.vmap(jax.vmap(surface.fun))))
    found = {}
    for name, make in METHODS.items():
        with np.errstate(over="ignore", invalid="ignore"):
            tune = np.asarray(
                f_all(_common.toy_trajectories(make, LRS, grad, W0, steps, tune_keys)), np.float64
            )
            tune_f = np.nan_to_num(tune[:, :, -tail:].mean(-1), nan=np.inf)
            score = np.log10(tune_f).mean(axis=1)
        chosen = int(np.argmin(score))
        ws = np.asarray(
            _common.toy_trajectories(make, LRS[chosen : chosen + 1], grad, W0, steps, eval_keys)[0],
            np.float64,
        )
        with np.errstate(over="ignore", invalid="ignore"):
            curve = np.asarray(f_all(ws[None]), np.float64)[0]
        step_len = np.linalg.norm(np.diff(ws, axis=1), axis=-1)
        found[name] = dict(
            chosen=chosen,
            score=score,
            tune_f=tune_f,
            curve=curve,
            final=curve[:, -tail:].mean(-1),
            step=step_len,
            end_dist=np.linalg.norm(ws[:, -tail:].mean(1) - 1.0, axis=-1),
        )
    ada, rms = found.values()
    ratio = _common.paired_ci(np.log10(ada["final"]), np.log10(rms["final"]))
    verdict = _common.judge(ratio, BAR, "above")
    edges = [n for n, r in found.items() if r["chosen"] in (0, len(LRS) - 1)]
    shrink = {
        n: _common.mean_ci(
            np.log10(r["step"][:, -tail:].mean(1) / r["step"][:, tail : 2 * tail].mean(1))
        )
        for n, r in found.items()
    }

    colors = dict(zip(found, ("tab:orange", "tab:purple")))
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    every = max(steps // 400, 1)
    t = np.arange(0, steps + 1, every)
    window = max(steps // 100, 1)
    for name, r in found.items():
        label = f"{name}, lr {LRS[r['chosen']]:g}"
        _common.band(axes[0], t, r["curve"][:, ::every], label, colors[name], geometric=True)
        ok = np.isfinite(r["score"])
        est = [_common.mean_ci(np.log10(r["tune_f"][i])) for i in np.flatnonzero(ok)]
        axes[1].errorbar(
            LRS[ok],
            [e.mean for e in est],
            yerr=[[e.mean - e.lo for e in est], [e.hi - e.mean for e in est]],
            fmt="o-",
            ms=4,
            capsize=3,
            color=colors[name],
            label=f"{name} (mean of {n_tune} tuning seeds, 95% CI)",
        )
        axes[1].plot(LRS[r["chosen"]], r["score"][r["chosen"]], "k*", ms=12)
        smooth = r["step"][:, : steps // window * window].reshape(n_eval, -1, window).mean(-1)
        _common.band(
            axes[2],
            (np.arange(smooth.shape[1]) + 0.5) * window,
            smooth,
            label,
            colors[name],
            geometric=True,
        )
    _common.finish_axes(
        axes[0],
        "step",
        "f(w_t) (Rosenbrock, minimum 0)",
        f"Loss on {n_eval} fresh noise seeds at the chosen lrs",
        logy=True,
    )
    _common.finish_axes(
        axes[1],
        "learning rate",
        f"log10 f, mean over the last {tail} steps",
        "lr grid on tuning seeds (star: chosen; diverged lrs omitted)",
        logx=True,
        logy=False,
    )
    _common.finish_axes(
        axes[2],
        "step",
        f"step length |w_t+1 - w_t| (mean per {window} steps)",
        "How far each method still moves",
        logy=True,
    )
    fig.suptitle(f"Rosenbrock from {W0}, gradient noise N(0, {NOISE:g}^2), {steps} steps")
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    a_name, r_name = list(found)
    measured = {
        "AdaGrad: chosen lr": LRS[ada["chosen"]],
        "RMSProp: chosen lr": LRS[rms["chosen"]],
        "AdaGrad: final f (last 10%)": _common.mean_ci(ada["final"]),
        "RMSProp: final f (last 10%)": _common.mean_ci(rms["final"]),
        "log10(f AdaGrad / f RMSProp), paired": ratio,
        "AdaGrad: log10 step length, last 10% / second 10%": shrink[a_name],
        "RMSProp: log10 step length, last 10% / second 10%": shrink[r_name],
        "chosen lr at the grid's edge": ", ".join(edges) or "none",
    }
    word = {
        "reproduced": "higher than",
        "not reproduced": "not 2x above",
        "inconclusive": "within noise of 2x",
    }[verdict]
    conclusion = (
        f"each at its tuned lr, AdaGrad ends {word} RMSProp: f ratio 10^{ratio.mean:.2f} "
        f"[10^{ratio.lo:.2f}, 10^{ratio.hi:.2f}]; AdaGrad's steps shrink "
        f"10^{-shrink[a_name].mean:.1f}x from the second to the last 10% of the run"
    )
    theory = ""
    if verdict != "reproduced":
        theory = (
            "With gradient noise of variance σ² AdaGrad's accumulator grows like σ² t, so its "
            "effective rate behaves like lr/(σ√t): a decaying step that averages the noise "
            "out, close to the Robbins-Monro schedules that converge under noise. RMSProp's "
            "moving average forgets, so its effective rate stays near lr/σ and it settles in a "
            "noise floor whose size grows with lr. Tuning the global lr compensates for the "
            "large gradients of the steep start (the accumulator's early sum is a constant "
            "that a larger lr offsets), so the early-stopping effect the lecture describes "
            "needs a fixed, untuned lr or a horizon past which the √t decay is too slow for "
            "the remaining distance (Duchi, Hazan & Singer 2011; Tieleman & Hinton 2012)."
        )
    rows = [
        {
            "method": name,
            "lr": LRS[i],
            "tuning: mean log10 f (last 10%)": r["score"][i],
            "chosen": "yes" if i == r["chosen"] else "",
        }
        for name, r in found.items()
        for i in range(len(LRS))
    ]
    setup = (
        f"{steps} steps, noise N(0, {NOISE:g}^2), lr grid {LRS[0]:g} .. {LRS[-1]:g} (x2), "
        f"{n_tune} tuning seeds, {n_eval} evaluation seeds, f averaged over the last "
        f"{tail} steps."
    )
    return _common.report(
        globals(), rows, out_dir, measured, figure, verdict, setup, conclusion, theory
    )


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
