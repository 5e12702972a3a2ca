"""Claim 11: an output bias set from the class marginals starts the loss at the label entropy.

An imbalanced digits subset (class ``k`` has frequency proportional to 0.7^k) and an MLP
whose weights start small (``N(0, 0.01^2)``), so the initial logits are the output bias.
With a zero bias the initial prediction is uniform and the loss is log(10); with
``jdl.initializers.bias_from_marginals(freqs)`` (softmax(b) = the training marginals) it
is the cross-entropy of the marginals with themselves, the label entropy H(c) -- the loss
of the best input-independent predictor, which the zero-bias model spends its first steps
learning.

    python experiments/c11_bias_from_marginals.py [--quick] [--out DIR]
"""

from __future__ import annotations

import math

import jax
import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c11_bias_from_marginals"
CLAIM = 11
TITLE = "Bias from marginals: the first loss is the label entropy instead of log(C)"
SEEDS = ("000",)
RATIO, LR, BATCH = 0.7, 1e-2, 16
CRITERION = (
    "imbalanced digits (freq ~ 0.7^k), MLP with N(0, 0.01^2) weights: the loss before "
    "training is within 0.05 of the label entropy H(c) with bias_from_marginals and within "
    "0.05 of log(10) with a zero bias; the mean loss of the first epoch (Adam 1e-2) is lower "
    "with bias_from_marginals (mean of 3 seeds)"
)


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    epochs = _common.pick(quick, smoke, 10, 5, 1)
    seeds = _common.pick(quick, smoke, [0, 1, 2], [0, 1, 2], [0])
    (x, y), test = jdl.data.load_digits()
    fractions = RATIO ** np.arange(10)
    fractions /= fractions.sum()
    x, y = jdl.data.imbalanced(x, y, fractions, seed=0)
    xt, yt = jdl.data.imbalanced(*test, fractions, seed=0)
    freqs = np.bincount(y, minlength=10) / len(y)
    entropy = float(-np.sum(freqs * np.log(freqs)))
    log_c = math.log(10)
    biases = {
        "bias_from_marginals": jdl.initializers.bias_from_marginals(freqs),
        "zero bias": jdl.initializers.zeros,
    }
    found = {}
    for name, bias in biases.items():
        model = jdl.models.MLP(hidden=(64,), kernel_init=jdl.initializers.small_random(0.01),
                               output_bias_init=bias)
        initial, curves, first_epoch, final = [], [], [], []
        for seed in seeds:
            state = jdl.training.create_train_state(model, jdl.adam(LR), jax.random.key(seed),
                                                    x[:1])
            initial.append(jdl.training.evaluate(state, (x, y))[0])
            state, hist = jdl.training.fit(state, (x, y), (xt, yt), epochs=epochs,
                                           batch_size=BATCH, seed=seed, progress=False)
            curves.append(hist.step_loss)
            first_epoch.append(hist.train_loss[0])
            final.append(hist.val_loss[-1])
        found[name] = dict(initial=float(np.mean(initial)), curve=np.mean(curves, axis=0),
                           first_epoch=float(np.mean(first_epoch)), final=float(np.mean(final)),
                           steps_per_epoch=hist.steps_per_epoch[0])
    marg, zero = found["bias_from_marginals"], found["zero bias"]
    reproduced = bool(abs(marg["initial"] - entropy) < 0.05 and abs(zero["initial"] - log_c) < 0.05
                      and marg["first_epoch"] < zero["first_epoch"])

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for (name, r), color in zip(found.items(), ("tab:green", "tab:red")):
        axes[0].plot(r["curve"], color=color, lw=0.8, label=name)
    axes[0].axhline(log_c, color="0.4", ls=":", label=f"log(10) = {log_c:.3f}")
    axes[0].axhline(entropy, color="0.4", ls="--", label=f"label entropy H(c) = {entropy:.3f}")
    axes[0].set_xlim(0, 3 * marg["steps_per_epoch"])
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("minibatch loss (mean of seeds)")
    axes[0].set_title("First epochs of training")
    axes[0].legend(fontsize=8)
    axes[1].bar(np.arange(10), freqs, color="tab:blue", label="training marginals c")
    axes[1].set_xlabel("class")
    axes[1].set_ylabel("frequency")
    axes[1].set_title(f"Imbalanced digits: {len(y)} training examples")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [{"output bias": name, "loss before training": r["initial"],
             "mean loss, first epoch": r["first_epoch"], f"test loss after {epochs} epochs":
             r["final"]} for name, r in found.items()]
    rows.append({"output bias": "reference: H(c) / log(10)",
                 "loss before training": f"{entropy:.4g} / {log_c:.4g}"})
    measured = {
        "label entropy H(c)": entropy, "log(10)": log_c,
        "initial loss, marginals bias": marg["initial"], "initial loss, zero bias": zero["initial"],
        "first-epoch loss, marginals bias": marg["first_epoch"],
        "first-epoch loss, zero bias": zero["first_epoch"],
    }
    setup = (f"digits subsampled to class frequencies ~ {RATIO}^k ({len(y)} train, {len(yt)} "
             f"test), MLP(64) with small_random(0.01) kernels, Adam {LR}, batch {BATCH}, "
             f"{epochs} epochs, seeds {list(seeds)}.")
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup))
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
