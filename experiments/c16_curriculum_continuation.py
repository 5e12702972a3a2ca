"""Claim 16: continuation methods and curriculum learning versus plain training.

J. Petersen, "Optimization in Deep Learning":

    "Classic continuation methods [...] are based on the idea of starting with smooth
    functions and gradually making them less smooth. [...] Curriculum learning can be
    seen as a continuation method, which works by planning the learning process such
    that simple concepts is learned first and then progressing towards more and more
    complicated concepts."

1. Continuation (``jdl.training.continuation``; a sanity check: at width 2 the ripples
   are damped by e^-8, so the smoothed bowl is convex): on the bumpy bowl
   f(w) = 0.05 ||w||^2 - cos(2 w1) - cos(2 w2) + 2 (global minimum 0 at the origin, a local
   minimum every ~pi), gradient descent on Gaussian-smoothed objectives with widths
   2 -> 1 -> 0, each stage warm-started from the last, versus plain gradient descent on f
   for the same number of steps, from 5 independent sets of 64 random starts in [-8, 8]^2.
2. Curriculum (``jdl.training.CurriculumSampler`` through ``FitConfig(sampler=...)``):
   digits examples ranked easy-to-hard by a reference model's loss (``example_scores``),
   the pool growing in "baby steps" (:func:`pacing`) that reach the full set by half the
   budget, versus plain shuffling; each arm's SGD learning rate tuned per budget on a
   validation split; final test
   accuracy at budgets of 4, 8 and 16 epochs, on clean labels and with 20% of the
   training labels replaced by random wrong ones.

    python experiments/c16_curriculum_continuation.py [--quick] [--out DIR]
"""

from __future__ import annotations

import _common
import jax
import jax.numpy as jnp
import numpy as np
from _common import plt

import jaxopt_dl as jdl

NAME = "c16_curriculum_continuation"
CLAIM = 16
ENTRY = _common.criteria("c16")
TITLE = ENTRY["title"]
SEEDS = ("000", "002")
CRITERION = ENTRY["criterion"]
SIGMAS, LR = (2.0, 1.0, 0.0), 0.1
LRS = 2.0 ** np.arange(-5, 3)
NOISE, N_TRAIN, BATCH = 0.2, 1100, 32
CONDITIONS = ("clean labels", "20% label noise")


def bumpy(w):
    return 0.05 * jnp.sum(w**2) - jnp.cos(2 * w[0]) - jnp.cos(2 * w[1]) + 2.0


def continuation_hits(n_sets: int, n_starts: int, stage_steps: int) -> dict:
    """Fraction of starts ending within 0.1 of the global minimum, per set, per method."""
    total = lambda ws: jnp.sum(jax.vmap(bumpy)(ws))  # noqa: E731 - separable over starts
    out = {"continuation": [], "plain GD": [], "example": {}}
    for k in range(n_sets):
        starts = jax.random.uniform(jax.random.key(k), (n_starts, 2), minval=-8.0, maxval=8.0)
        for name, sigmas in (("continuation", SIGMAS), ("plain GD", (0.0,) * len(SIGMAS))):
            res = jdl.training.continuation(
                total, starts, sigmas, jdl.sgd(LR), stage_steps, jax.random.key(100 + k)
            )
            final = np.asarray(res.x)
            out[name].append(float(np.mean(np.linalg.norm(final, axis=1) < 0.1)))
            if k == 0:
                out["example"][name] = (np.asarray(starts), final)
    return out


def pacing(budget: int) -> tuple[int, int]:
    """``(stages S, epochs per stage K)`` of the baby steps for a budget in epochs.

    The pool grows in ``S`` equal steps of ``K`` epochs and is full from epoch
    ``(S - 1) K <= budget / 2`` on: 2 x 1 at 4 epochs, 4 x 1 at 8, 4 x 2 at 16.
    """
    stages = min(4, max(2, budget // 2))
    return stages, max(1, budget // (2 * stages))


def train(data, val, lr, seed, epochs, scores):
    """Final accuracy on ``val`` of one run (curriculum when ``scores`` is given); 0 if it diverged."""
    model = jdl.models.MLP(hidden=(64,))
    x, y = data
    sampler = None
    if scores is not None:
        sampler = jdl.training.CurriculumSampler(scores, jdl.training.baby_steps(*pacing(epochs)))
    state = jdl.training.create_train_state(model, jdl.sgd(float(lr)), jax.random.key(seed), x[:1])
    try:
        _, hist = jdl.training.fit(
            state,
            data,
            val,
            epochs=epochs,
            batch_size=BATCH,
            seed=seed,
            progress=False,
            config=jdl.training.FitConfig(sampler=sampler),
        )
    except jdl.training.NonFiniteError:
        return 0.0
    return float(hist.val_accuracy[-1])


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    stage_steps = _common.pick(quick, smoke, 300, 200, 20)
    n_starts = _common.pick(quick, smoke, 64, 64, 8)
    n_sets = _common.pick(quick, smoke, 5, 5, 2)
    budgets = _common.pick(quick, smoke, (4, 8, 16), (4, 8), (4,))
    n_eval = _common.pick(quick, smoke, ENTRY["seeds"], 5, 2)
    tune_seeds = _common.pick(quick, smoke, (100, 101), (100,), (100,))
    lrs = _common.pick(quick, smoke, LRS, LRS[1::2], LRS[-3:])  # quick: a x4 grid

    cont = continuation_hits(n_sets, n_starts, stage_steps)
    cont_diff = _common.paired_ci(cont["continuation"], cont["plain GD"])

    (x, y), (xt, yt) = jdl.data.load_digits()
    x, y = np.asarray(x), np.asarray(y)
    rng = np.random.default_rng(0)
    flip = rng.random(N_TRAIN) < NOISE
    noisy = y[:N_TRAIN].copy()
    noisy[flip] = (noisy[flip] + rng.integers(1, 10, flip.sum())) % 10
    val = (x[N_TRAIN:], y[N_TRAIN:])
    test = (np.asarray(xt), np.asarray(yt))
    results, tuning, chosen = {}, {}, {}
    for cond, labels in zip(CONDITIONS, (y[:N_TRAIN], noisy)):
        data = (x[:N_TRAIN], labels)
        model = jdl.models.MLP(hidden=(64,))
        ref = jdl.training.create_train_state(model, jdl.sgd(0.05), jax.random.key(99), x[:1])
        ref, _ = jdl.training.fit(ref, data, epochs=2, batch_size=BATCH, seed=99, progress=False)
        scores = jdl.training.example_scores(ref, data)
        for arm, s in (("curriculum", scores), ("plain", None)):
            for b in budgets:
                acc = np.array(
                    [[train(data, val, lr, seed, b, s) for seed in tune_seeds] for lr in lrs]
                )
                tuning[(cond, arm, b)] = acc.mean(1)
                i = int(np.argmax(acc.mean(1)))
                chosen[(cond, arm, b)] = (float(lrs[i]), i in (0, len(lrs) - 1))
                results[(cond, arm, b)] = np.array(
                    [
                        train(data, test, chosen[(cond, arm, b)][0], seed, b, s)
                        for seed in range(n_eval)
                    ]
                )
    diffs = {
        (c, b): _common.paired_ci(results[(c, "curriculum", b)], results[(c, "plain", b)])
        for c in CONDITIONS
        for b in budgets
    }
    sanity = {
        "(a) continuation from a width that flattens the ripples finds the bowl's minimum": (
            _common.judge(cont_diff, 0.3, "above")
        )
    }
    verdict = _common.combine([_common.judge(e, 0.0, "above") for e in diffs.values()])

    fig, axes = plt.subplots(1, 4, figsize=(22, 4.8))
    g = np.linspace(-8.5, 8.5, 200)
    gx, gy = np.meshgrid(g, g)
    zz = np.asarray(jax.vmap(bumpy)(jnp.asarray(np.stack([gx.ravel(), gy.ravel()], 1))))
    for ax, name in zip(axes[:2], ("continuation", "plain GD")):
        starts, final = cont["example"][name]
        ax.contourf(gx, gy, zz.reshape(gx.shape), levels=30, cmap="Greys")
        ax.scatter(*starts.T, s=8, c="tab:blue", label="starts (set 1)")
        ax.scatter(
            *final.T,
            s=30,
            marker="x",
            c="tab:red",
            label=f"final ({cont[name][0]:.0%} at the global min)",
        )
        ax.set_xlabel("w1")
        ax.set_ylabel("w2")
        title = "continuation (sigma 2 -> 1 -> 0)" if name == "continuation" else "plain GD"
        ax.set_title(f"{title}: {np.mean(cont[name]):.0%} at the global min over {n_sets} sets")
        ax.legend(fontsize=7, loc="lower left")
    for ax, cond in zip(axes[2:], CONDITIONS):
        for arm, color, off in (("curriculum", "tab:green", -0.03), ("plain", "tab:gray", 0.03)):
            est = [_common.mean_ci(results[(cond, arm, b)]) for b in budgets]
            tuned = ", ".join(f"{chosen[(cond, arm, b)][0]:g}" for b in budgets)
            ax.errorbar(
                np.array(budgets) * (1 + off),
                [e.mean for e in est],
                yerr=[[e.mean - e.lo for e in est], [e.hi - e.mean for e in est]],
                fmt="o-",
                capsize=3,
                color=color,
                label=f"{arm} (lr {tuned}; mean of {n_eval}, 95% CI)",
            )
        ax.set_xticks(budgets, [str(b) for b in budgets])
        _common.finish_axes(
            ax,
            "budget (epochs)",
            "final test accuracy (fraction)",
            f"Curriculum vs plain, digits, {cond}",
            logx=True,
            logy=False,
            legend_size=7,
        )
        ax.set_xticks(budgets, [str(b) for b in budgets])
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    hits = {k: int(round(sum(cont[k]) * n_starts)) for k in ("continuation", "plain GD")}
    measured = {
        "continuation: fraction at global min": _common.wilson_ci(
            hits["continuation"], n_sets * n_starts
        ),
        "plain GD: fraction at global min": _common.wilson_ci(hits["plain GD"], n_sets * n_starts),
        "continuation - plain GD, paired over sets": cont_diff,
    }
    for (cond, arm, b), (lr, edge) in chosen.items():
        measured[f"{cond}, {arm}, {b} epochs: tuned lr"] = lr
        if edge:
            measured[f"{cond}, {arm}, {b} epochs: tuned lr at the grid's edge"] = "yes"
    for (cond, b), e in diffs.items():
        measured[f"{cond}, {b} epochs: curriculum - plain test accuracy, paired"] = e
    best = max(diffs, key=lambda k: diffs[k].mean)
    conclusion = (
        f"continuation ends at the global minimum from {np.mean(cont['continuation']):.0%} of "
        f"the starts vs {np.mean(cont['plain GD']):.0%} for plain GD; curriculum minus plain "
        f"test accuracy ranges from {min(e.mean for e in diffs.values()):+.3f} to "
        f"{diffs[best].mean:+.3f} ({best[0]}, {best[1]} epochs)"
    )
    theory = ""
    if verdict != "reproduced":
        theory = (
            "Smoothing a function by a Gaussian of width sigma damps a ripple of frequency k by "
            "exp(-k^2 sigma^2 / 2), so the smoothed bumpy bowl is nearly convex and its "
            "minimum sits near the true one: continuation works when the global structure "
            "survives smoothing. A curriculum changes only the order of the examples; with an "
            "lr tuned per arm and every example seen once the pool is full, SGD on a small, "
            "easy problem reaches the same minimum either way (Bengio et al. 2009 report "
            "gains mainly on harder tasks and noisy data), and the early epochs on a reduced "
            "pool are fewer distinct examples, which costs accuracy at a short budget. With "
            "noisy labels the reference model ranks the mislabelled examples hardest, so the "
            "curriculum postpones them but still trains on them at the end."
        )
    rows = []
    for (cond, arm, b), r in results.items():
        rows.append(
            {
                "labels": cond,
                "arm": arm,
                "budget (epochs)": b,
                "lr (tuned at this budget)": chosen[(cond, arm, b)][0],
                "final test accuracy": _common.mean_ci(r),
            }
        )
    tune_rows = [
        {"labels": c, "arm": a, "budget": b, **{f"lr {lr:g}": float(v) for lr, v in zip(lrs, acc)}}
        for (c, a, b), acc in tuning.items()
    ]
    setup = (
        f"continuation: {n_sets} sets of {n_starts} starts, {len(SIGMAS)} stages x "
        f"{stage_steps} GD steps (lr {LR}); curriculum: MLP(64), SGD batch {BATCH}, digits "
        f"{N_TRAIN} train / {len(val[0])} validation from the training split, test split "
        f"for the final accuracy; reference model 2 epochs; lr grid {lrs[0]:g} .. "
        f"{lrs[-1]:g} (x2) tuned per arm, condition and budget on validation over seeds "
        f"{list(tune_seeds)}; budgets {list(budgets)} (baby steps "
        f"{', '.join('%d x %d' % pacing(b) for b in budgets)} stages x epochs); "
        f"{n_eval} fresh seeds."
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
        extra_tables={"Tuning: mean final validation accuracy": tune_rows},
        sanity=sanity,
    )


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
