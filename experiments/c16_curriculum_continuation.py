"""Claim 16: continuation methods and curriculum learning versus plain training.

1. Continuation (``jdl.training.continuation``): on the bumpy bowl
   f(w) = 0.05 ||w||^2 - cos(2 w1) - cos(2 w2) + 2 (global minimum 0 at the origin, a local
   minimum every ~pi), gradient descent on Gaussian-smoothed objectives with widths
   2 -> 1 -> 0, each stage warm-started from the last, versus plain gradient descent on f
   for the same number of steps (widths 0 -> 0 -> 0), from 64 random starts in [-8, 8]^2
   (all starts in one call: the objective is the sum over starts, which is separable).
2. Curriculum (``jdl.training.CurriculumSampler``): digits examples ranked easy-to-hard by
   a reference model's loss (``example_scores``), the pool growing in 4 "baby steps", versus
   plain shuffled training with the same optimizer and steps.

    python experiments/c16_curriculum_continuation.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c16_curriculum_continuation"
CLAIM = 16
TITLE = "Continuation methods and curriculum learning versus plain training"
SEEDS = ("000", "002")
SIGMAS, LR = (2.0, 1.0, 0.0), 0.1
CRITERION = (
    "(1) bumpy bowl, 64 starts in [-8, 8]^2, GD lr 0.1: continuation (smoothing 2 -> 1 -> 0) "
    "ends within 0.1 of the global minimum from >= 80% of the starts, plain GD with the same "
    "steps from <= 30%; (2) digits, SGD 0.05, batch 32, mean of 3 seeds: curriculum (baby "
    "steps, 4 stages) has a higher mean test accuracy over the epochs than plain shuffling "
    "and a final test accuracy at most 1 point below it"
)


def bumpy(w):
    return 0.05 * jnp.sum(w**2) - jnp.cos(2 * w[0]) - jnp.cos(2 * w[1]) + 2.0


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    stage_steps = _common.pick(quick, smoke, 300, 200, 20)
    n_starts = _common.pick(quick, smoke, 64, 64, 8)
    epochs = _common.pick(quick, smoke, 16, 8, 4)
    seeds = _common.pick(quick, smoke, [0, 1, 2], [0, 1, 2], [0])

    # 1. continuation
    starts = jax.random.uniform(jax.random.key(0), (n_starts, 2), minval=-8.0, maxval=8.0)
    total = lambda ws: jnp.sum(jax.vmap(bumpy)(ws))  # noqa: E731 - separable over starts
    conts = {}
    for name, sigmas in (("continuation (sigma 2 -> 1 -> 0)", SIGMAS),
                         ("plain GD (sigma 0 -> 0 -> 0)", (0.0,) * len(SIGMAS))):
        res = jdl.training.continuation(total, starts, sigmas, jdl.sgd(LR), stage_steps,
                                        jax.random.key(1))
        final = np.asarray(res.x)
        conts[name] = dict(final=final, stages=[np.asarray(s) for s in res.stage_x],
                           hit=float(np.mean(np.linalg.norm(final, axis=1) < 0.1)),
                           values=np.asarray(jax.vmap(bumpy)(res.x)))
    cont, plain_gd = conts.values()

    # 2. curriculum
    (x, y), test = jdl.data.load_digits()
    model = jdl.models.MLP(hidden=(64,))
    ref = jdl.training.create_train_state(model, jdl.sgd(0.05), jax.random.key(99), x[:1])
    ref, _ = jdl.training.fit(ref, (x, y), epochs=2, batch_size=32, seed=99, progress=False)
    scores = jdl.training.example_scores(ref, (x, y))
    pacing = jdl.training.baby_steps(4, max(1, epochs // 8))
    curves = {}
    for name, sampler in (("curriculum (baby steps)", jdl.training.CurriculumSampler(scores,
                                                                                     pacing)),
                          ("plain shuffling", None)):
        accs = []
        for seed in seeds:
            state = jdl.training.create_train_state(model, jdl.sgd(0.05), jax.random.key(seed),
                                                    x[:1])
            _, hist = jdl.training.fit(state, (x, y), test, epochs=epochs, batch_size=32,
                                       seed=seed, progress=False,
                                       config=jdl.training.FitConfig(sampler=sampler))
            accs.append(hist.val_accuracy)
        curves[name] = np.mean(accs, axis=0)
    cur, plain = curves.values()
    part1 = cont["hit"] >= 0.8 and plain_gd["hit"] <= 0.3
    part2 = cur.mean() > plain.mean() and cur[-1] >= plain[-1] - 0.01
    reproduced = bool(part1 and part2)

    fig, axes = plt.subplots(1, 3, figsize=(18, 4.8))
    g = np.linspace(-8.5, 8.5, 200)
    gx, gy = np.meshgrid(g, g)
    zz = np.asarray(jax.vmap(bumpy)(jnp.asarray(np.stack([gx.ravel(), gy.ravel()], 1))))
    for ax, (name, r) in zip(axes[:2], conts.items()):
        ax.contourf(gx, gy, zz.reshape(gx.shape), levels=30, cmap="Greys")
        ax.scatter(*np.asarray(starts).T, s=8, c="tab:blue", label="starts")
        for k, stage in enumerate(r["stages"][:-1]):
            ax.scatter(*stage.T, s=10, marker="s", c="tab:orange", alpha=0.6,
                       label="end of stage 1" if k == 0 else None)
        ax.scatter(*r["final"].T, s=30, marker="x", c="tab:red",
                   label=f"final ({r['hit']:.0%} at the global min)")
        ax.set_xlabel("w1")
        ax.set_ylabel("w2")
        ax.set_title(name)
        ax.legend(fontsize=7, loc="lower left")
    ep = np.arange(1, epochs + 1)
    for (name, c), color in zip(curves.items(), ("tab:green", "tab:gray")):
        axes[2].plot(ep, c, "o-", color=color, label=f"{name}: mean {c.mean():.3f}")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("test accuracy (mean of seeds)")
    axes[2].set_title("Curriculum vs plain training on digits")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [{"method": name, "fraction at the global minimum": r["hit"],
             "median final f": float(np.median(r["values"]))} for name, r in conts.items()]
    cur_rows = [{"training": name, "mean test accuracy over epochs": float(c.mean()),
                 "final test accuracy": float(c[-1]), "test accuracy, epoch 1": float(c[0])}
                for name, c in curves.items()]
    measured = {"continuation: at global min": cont["hit"], "plain GD: at global min":
                plain_gd["hit"], "curriculum: mean test acc": float(cur.mean()),
                "plain: mean test acc": float(plain.mean()),
                "curriculum: final test acc": float(cur[-1]),
                "plain: final test acc": float(plain[-1])}
    setup = (f"continuation: {n_starts} starts, {len(SIGMAS)} stages x {stage_steps} GD steps "
             f"(lr {LR}), 32 perturbations per gradient; curriculum: MLP(64), reference model "
             f"2 epochs, baby_steps(4, {max(1, epochs // 8)}), {epochs} epochs, seeds "
             f"{list(seeds)}.")
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup),
                                extra_tables={"Curriculum on digits": cur_rows})
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
