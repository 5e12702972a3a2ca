"""Claim 18: overfit a small batch first; the update/weight ratio sits near 1e-3 for a good lr.

1. Seed 002's first debugging step: a correct model and pipeline drive the loss on 20
   training examples to ~0 (full-batch Adam, 300 steps). A broken pipeline -- the labels
   shifted against the inputs by a different offset every step, as when inputs and labels
   are shuffled separately -- cannot: the loss stays near the label entropy.
2. The update/weight ratio ``||Delta W|| / ||W||`` of every kernel
   (``jaxopt_dl.diagnostics.update_weight_ratio``) during SGD on the digits for a log grid
   of learning rates (``jdl.training.train_step_fn`` in a ``lax.scan``, vmapped over the
   learning rates): the learning rate with the lowest final loss has a ratio near 1e-3.

    python experiments/c18_overfit_small_batch.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c18_overfit_small_batch"
CLAIM = 18
TITLE = "Overfit 20 examples first (a broken label shift cannot); update/weight ratio ~1e-3"
SEEDS = ("002",)
N_SMALL, BATCH = 20, 32
CRITERION = (
    "(1) MLP(64), full-batch Adam 1e-2 on 20 digits for 300 steps: the correct pipeline ends "
    "with loss < 0.01, the broken one (labels rolled by a different offset every step) with "
    "loss > 0.5; (2) SGD batch 32 on digits, lr grid 1e-4..3: at the lr with the lowest "
    "final training loss, the median over kernels of the update/weight ratio (mean over the "
    "steps) is within [1e-4, 1e-2]"
)


def overfit(model, x, y, steps, broken):
    state = jdl.training.create_train_state(model, jdl.adam(1e-2), jax.random.key(0), x[:1])

    def step(state, t):
        labels = jnp.roll(y, 1 + t % (len(y) - 1)) if broken else y
        state, metrics = jdl.training.train_step_fn(state, (x, labels))
        return state, metrics["loss"]

    return np.asarray(jax.jit(lambda s: jax.lax.scan(step, s, jnp.arange(steps))[1])(state))


def ratio_run(model, x, y, lrs, steps):
    """Per lr: (median kernel update/weight ratio per step, loss per step)."""
    idx = jax.random.randint(jax.random.key(1), (steps, BATCH), 0, len(x))

    def one(lr):
        state = jdl.training.create_train_state(model, jdl.sgd(lr), jax.random.key(0), x[:1])

        def step(state, i):
            new, metrics = jdl.training.train_step_fn(state, (x[i], y[i]))
            updates = jax.tree.map(jnp.subtract, new.params, state.params)
            ratios = jdl.diagnostics.update_weight_ratio(state.params, updates)
            kernels = jnp.stack([v for k, v in ratios.items() if k.endswith("kernel")])
            return new, (jnp.median(kernels), metrics["loss"])

        return jax.lax.scan(step, state, idx)[1]

    ratio, loss = jax.jit(jax.vmap(one))(jnp.asarray(lrs, jnp.float32))
    return np.asarray(ratio), np.asarray(loss)


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    steps_small = _common.pick(quick, smoke, 300, 300, 300)
    steps = _common.pick(quick, smoke, 1500, 600, 60)
    lrs = np.logspace(-4, np.log10(3), _common.pick(quick, smoke, 11, 11, 4)).astype(np.float32)
    (x, y), _ = jdl.data.load_digits()
    model = jdl.models.MLP(hidden=(64,))
    xs, ys = jnp.asarray(x[:N_SMALL]), jnp.asarray(y[:N_SMALL])
    good = overfit(model, xs, ys, steps_small, broken=False)
    bad = overfit(model, xs, ys, steps_small, broken=True)
    freqs = np.bincount(np.asarray(ys), minlength=10) / N_SMALL
    entropy = float(-np.sum(freqs[freqs > 0] * np.log(freqs[freqs > 0])))

    ratio, loss = ratio_run(model, jnp.asarray(x), jnp.asarray(y), lrs, steps)
    tail = max(1, steps // 10)
    final = np.nanmean(loss[:, -tail:], axis=1)
    final = np.where(np.isfinite(final), final, np.inf)
    best = int(np.argmin(final))
    mean_ratio = np.nanmean(np.where(np.isfinite(ratio), ratio, np.nan), axis=1)
    part1 = good[-1] < 0.01 and bad[-1] > 0.5
    part2 = 1e-4 <= mean_ratio[best] <= 1e-2
    reproduced = bool(part1 and part2)

    fig, axes = plt.subplots(1, 3, figsize=(18, 4.6))
    axes[0].semilogy(good, color="tab:green", label="correct labels")
    axes[0].semilogy(bad, color="tab:red", label="broken: labels shifted every step")
    axes[0].axhline(entropy, color="0.5", ls=":", label=f"label entropy {entropy:.2f}")
    axes[0].set_xlabel("full-batch Adam step")
    axes[0].set_ylabel(f"loss on the {N_SMALL} examples")
    axes[0].set_title(f"Overfit {N_SMALL} examples first")
    axes[0].legend(fontsize=8)
    axes[1].loglog(lrs, mean_ratio, "o-", color="tab:blue", label="median kernel ratio")
    axes[1].axhspan(1e-4, 1e-2, color="tab:green", alpha=0.1, label="[1e-4, 1e-2]")
    axes[1].axhline(1e-3, color="tab:green", ls=":", label="1e-3")
    axes[1].axvline(lrs[best], color="k", ls="--", lw=0.8, label=f"best lr {lrs[best]:.3g}")
    axes[1].set_xlabel("learning rate (SGD)")
    axes[1].set_ylabel("update / weight ratio (mean over steps)")
    axes[1].set_title("Update/weight ratio across learning rates")
    axes[1].legend(fontsize=8)
    axes[2].semilogx(lrs, np.minimum(final, 10), "o-", color="tab:purple",
                     label=f"final training loss (last {tail} steps; capped at 10)")
    axes[2].set_xlabel("learning rate (SGD)")
    axes[2].set_ylabel("training loss")
    axes[2].set_title(f"Loss after {steps} steps")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [{"learning rate": float(lr), "median kernel update/weight ratio": mean_ratio[i],
             "final training loss": final[i]} for i, lr in enumerate(lrs)]
    overfit_rows = [{"pipeline": "correct", "loss at step 0": good[0], "final loss": good[-1]},
                    {"pipeline": "broken (label shift)", "loss at step 0": bad[0],
                     "final loss": bad[-1]}]
    measured = {"correct: final loss": float(good[-1]), "broken: final loss": float(bad[-1]),
                "best lr": float(lrs[best]), "ratio at best lr": float(mean_ratio[best])}
    setup = (f"MLP(64) ReLU on digits; overfit: first {N_SMALL} training examples, "
             f"{steps_small} full-batch Adam 1e-2 steps; ratios: SGD batch {BATCH}, {steps} "
             f"steps, lrs {np.round(lrs, 5).tolist()}.")
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup),
                                extra_tables={"Overfitting 20 examples": overfit_rows})
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
