"""Claim 20: bfloat16 state trains like float32 when it is rounded stochastically.

Gupta, Agrawal, Gopalakrishnan & Narayanan, "Deep Learning with Limited Numerical
Precision" (ICML 2015):

    "deep networks can be trained using only 16-bit wide fixed-point number
    representation when using stochastic rounding, and incur little to no degradation
    in the classification accuracy"

Tested here for bfloat16, the 16-bit format accelerators use: the digits ResNet (quick
mode: a 2x64 MLP with batch norm) trained
with Adam and a cosine-decayed learning rate, its moments and then its parameters held
in bfloat16, rounded to nearest, stochastically (:func:`jaxopt_dl.stochastic_round`
through ``rounding="stochastic"``), or -- for parameters -- to nearest with a Kahan
compensation buffer (:func:`jaxopt_dl.kahan_apply_updates`), against float32. The
parameter arms keep bfloat16 moments too (the 6-bytes-per-parameter configuration) and
have no float32 master copy; the Kahan arm's moments are rounded stochastically. Every arm trains on the same seeds (initialization and
batch order); one compiled ``lax.scan`` per arm, run once per seed.

    python experiments/c20_low_precision.py [--quick] [--out DIR]
"""

from __future__ import annotations

import _common
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import plt

import jaxopt_dl as jdl

NAME = "c20_low_precision"
CLAIM = 20
ENTRY = _common.criteria("c20")
TITLE = ENTRY["title"]
SEEDS = ("004",)
CRITERION = ENTRY["criterion"]
BATCH, PEAK_LR = 64, 3e-3
BF16 = jnp.bfloat16
# arm -> (params dtype, moments dtype, moment rounding, params update)
ARMS = {
    "float32": (jnp.float32, None, "nearest", "nearest"),
    "moments bf16, nearest": (jnp.float32, BF16, "nearest", "nearest"),
    "moments bf16, stochastic": (jnp.float32, BF16, "stochastic", "nearest"),
    "params+moments bf16, nearest": (BF16, BF16, "nearest", "nearest"),
    "params+moments bf16, stochastic": (BF16, BF16, "stochastic", "stochastic"),
    "params+moments bf16, Kahan": (BF16, BF16, "stochastic", "kahan"),
}


def _train(arm, model, x, y, test, seeds, epochs):
    """Final training loss (full training set), test loss and test accuracy per seed."""
    p_dtype, m_dtype, m_rounding, update = ARMS[arm]
    steps_per_epoch = len(x) // BATCH
    total = epochs * steps_per_epoch
    schedule = jdl.cosine_decay_schedule(PEAK_LR, total)
    x, y = jnp.asarray(x), jnp.asarray(y)

    def loss_fn(params, batch_stats, xb, yb):
        out, mutated = model.apply(
            {"params": params, "batch_stats": batch_stats}, xb, train=True, mutable=["batch_stats"]
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(out, yb).mean()
        return loss, mutated["batch_stats"]

    def evaluate(params, batch_stats, xs, ys):
        out = model.apply({"params": params, "batch_stats": batch_stats}, xs, train=False)
        loss = optax.softmax_cross_entropy_with_integer_labels(out, ys).mean()
        return loss, jnp.mean(jnp.argmax(out, -1) == ys)

    def one_seed(seed):
        key = jax.random.key(seed)
        variables = model.init(key, x[:1], train=False)
        params = jax.tree.map(lambda p: p.astype(p_dtype), variables["params"])
        tx = jdl.adam(
            schedule, mu_dtype=m_dtype, nu_dtype=m_dtype, rounding=m_rounding, rounding_seed=seed
        )
        order = jax.vmap(lambda k: jax.random.permutation(k, len(x)))(
            jax.random.split(jax.random.fold_in(key, 1), epochs)
        )
        batches = order[:, : steps_per_epoch * BATCH].reshape(total, BATCH)

        def step(carry, inputs):
            params, batch_stats, opt_state, compensation = carry
            t, idx = inputs
            (_, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, batch_stats, x[idx], y[idx]
            )
            updates, opt_state = tx.update(grads, opt_state, params)
            if update == "kahan":
                params, compensation = jdl.kahan_apply_updates(params, updates, compensation)
            elif update == "stochastic":
                words = jnp.stack([seed.astype(jnp.uint32), jnp.uint32(0), t.astype(jnp.uint32)])
                params = jdl.apply_updates(params, updates, rounding="stochastic", key=words)
            else:
                params = jdl.apply_updates(params, updates)
            return (params, batch_stats, opt_state, compensation), None

        carry = (
            params,
            variables["batch_stats"],
            tx.init(params),
            jax.tree.map(jnp.zeros_like, params),
        )
        (params, batch_stats, opt_state, compensation), _ = jax.lax.scan(
            step, carry, (jnp.arange(total), batches)
        )
        train_loss, _ = evaluate(params, batch_stats, x, y)
        test_loss, test_acc = evaluate(params, batch_stats, *map(jnp.asarray, test))
        state_bytes = sum(
            leaf.size * leaf.dtype.itemsize
            for leaf in jax.tree.leaves((params, opt_state))
            if jnp.issubdtype(leaf.dtype, jnp.floating)
        )
        if update == "kahan":
            state_bytes += sum(c.size * c.dtype.itemsize for c in jax.tree.leaves(compensation))
        n_params = sum(p.size for p in jax.tree.leaves(params))
        return train_loss, test_loss, test_acc, state_bytes / n_params

    compiled = jax.jit(
        one_seed
    )  # compiled once, run per seed (vmapped convolutions compile slowly)
    out = [compiled(jnp.asarray(s, jnp.int32)) for s in seeds]
    return {
        k: np.asarray([o[i] for o in out], np.float64)
        for i, k in enumerate(("train", "loss", "acc", "bytes"))
    }


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    epochs = _common.pick(quick, smoke, 30, 10, 1)
    seeds = list(range(_common.pick(quick, smoke, ENTRY["seeds"], ENTRY["seeds"], 2)))
    (x_all, y_all), test = jdl.data.load_digits()
    n_train = _common.pick(quick, smoke, len(x_all), len(x_all), 256)
    x, y = x_all[:n_train], y_all[:n_train]
    # The ResNet's compiled scan takes minutes to build on 2 cores: quick mode trains the
    # MLP (same arms, seeds and schedule).
    model = _common.pick(
        quick,
        smoke,
        jdl.models.ResNet(),
        jdl.models.MLP(hidden=(64, 64), use_batchnorm=True),
        jdl.models.MLP(hidden=(16,), use_batchnorm=True),
    )
    found = {arm: _train(arm, model, x, y, test, seeds, epochs) for arm in ARMS}

    f32 = found["float32"]
    par = {k: found[f"params+moments bf16, {k}"] for k in ("nearest", "stochastic", "Kahan")}
    mom = {k: found[f"moments bf16, {k}"] for k in ("nearest", "stochastic")}
    estimates = {
        "moments: train loss, bf16-stochastic - float32": _common.paired_ci(
            mom["stochastic"]["train"], f32["train"]
        ),
        "moments: test accuracy, float32 - bf16-stochastic": _common.paired_ci(
            f32["acc"], mom["stochastic"]["acc"]
        ),
        "params: train loss, bf16-nearest - bf16-stochastic": _common.paired_ci(
            par["nearest"]["train"], par["stochastic"]["train"]
        ),
        "params: test accuracy, float32 - bf16-stochastic": _common.paired_ci(
            f32["acc"], par["stochastic"]["acc"]
        ),
        "params: test accuracy, float32 - bf16-Kahan": _common.paired_ci(
            f32["acc"], par["Kahan"]["acc"]
        ),
    }
    e = list(estimates.values())
    verdict = _common.combine(
        [
            _common.judge(e[1], 0.01, "below"),
            _common.judge(e[2], 0.0, "above"),
            _common.judge(e[3], 0.01, "below"),
        ]
    )

    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    names = list(found)
    pos = np.arange(len(names))
    colors = plt.cm.tab10(pos)
    for ax, key, label in (
        (axes[0], "train", "final training loss (nats)"),
        (axes[1], "acc", "test accuracy (fraction)"),
    ):
        est = [_common.mean_ci(found[n][key]) for n in names]
        ax.bar(
            pos,
            [s.mean for s in est],
            color=colors,
            yerr=[[s.mean - s.lo for s in est], [s.hi - s.mean for s in est]],
            capsize=3,
            label=f"mean of {len(seeds)} seeds, 95% CI",
        )
        ax.set_xticks(pos, names, rotation=25, ha="right", fontsize=7)
        ax.set_xlabel("arm")
        ax.set_ylabel(label)
        ax.set_title(f"{label.split(' (')[0].capitalize()} after {epochs} epochs")
        ax.legend(fontsize=7)
    axes[1].set_ylim(max(0.0, min(found[n]["acc"].min() for n in names) - 0.05), 1.0)
    axes[2].bar(
        pos,
        [found[n]["bytes"].mean() for n in names],
        color=colors,
        label="params + Adam moments (+ Kahan buffer)",
    )
    axes[2].set_xticks(pos, names, rotation=25, ha="right", fontsize=7)
    axes[2].set_xlabel("arm")
    axes[2].set_ylabel("bytes of state per parameter")
    axes[2].set_title("Memory of the training state")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [
        {
            "arm": n,
            "bytes / parameter": float(found[n]["bytes"].mean()),
            "final training loss": _common.mean_ci(found[n]["train"]),
            "test loss": _common.mean_ci(found[n]["loss"]),
            "test accuracy": _common.mean_ci(found[n]["acc"]),
        }
        for n in names
    ]
    measured = {f"{n}: test accuracy": _common.mean_ci(found[n]["acc"]) for n in names}
    measured.update({f"{n}: bytes per parameter": float(found[n]["bytes"].mean()) for n in names})
    measured.update(estimates)
    conclusion = (
        f"bf16 params+moments with stochastic rounding: test accuracy "
        f"{par['stochastic']['acc'].mean():.3f} at {par['stochastic']['bytes'].mean():.0f} B "
        f"per parameter vs float32 {f32['acc'].mean():.3f} at {f32['bytes'].mean():.0f} B; "
        f"round to nearest {par['nearest']['acc'].mean():.3f}, Kahan "
        f"{par['Kahan']['acc'].mean():.3f}"
    )
    theory = ""
    if verdict != "reproduced":
        theory = (
            "Round to nearest drops every change smaller than half a bfloat16 spacing "
            "(2^-9 of the value): an EMA stalls within about 2^-9 / (1 - beta) of its "
            "target and a parameter stops once lr |update| falls below half its spacing, "
            "which a decayed learning rate reaches at the end of training. Stochastic "
            "rounding keeps every change in expectation, at the price of a random walk of "
            "about one spacing per coordinate; whether that walk or the stall costs "
            "accuracy depends on how much of training happens at small steps, so on a "
            "short, well-conditioned run both may stay within the seeds' spread."
        )
    setup = (
        f"digits: {n_train} train / {len(test[0])} test; "
        f"{'ResNet (1, 1, 1) width 16' if not quick else 'MLP (64, 64) ReLU'} with batch norm, Adam "
        f"(b1 0.9, b2 0.999) with a cosine decay from {PEAK_LR} to 0, batch {BATCH}, "
        f"{epochs} epochs, seeds {seeds} (each arm the same initialization and batch order "
        f"per seed); bfloat16 storage, float32 arithmetic; no float32 master copy in the "
        f"parameter arms. Bytes counted from the state's leaves."
    )
    return _common.report(
        globals(), rows, out_dir, measured, figure, verdict, setup, conclusion, theory
    )


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
