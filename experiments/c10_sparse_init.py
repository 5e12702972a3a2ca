"""Claim 10: sparse initialization trains a deep net where dense small initialization stalls.

A deep tanh MLP (8 hidden layers of 64 units) on the digits, trained by SGD with momentum
0.9 for a grid of learning rates (one vmapped ``jdl.training.sweep`` per initialization,
two seeds). Dense small init ``N(0, 0.01^2)`` shrinks the signal ~0.08x per layer, so
inputs and gradients vanish and the loss sits at log(10); Martens' sparse init
(``jdl.initializers.sparse(15)``: 15 nonzero N(0, 1) weights per unit) keeps unit-scale
signals and diverse units whatever the width.

    python experiments/c10_sparse_init.py [--quick] [--out DIR]
"""

from __future__ import annotations

import math

import flax.linen as nn
import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c10_sparse_init"
CLAIM = 10
TITLE = "Sparse init (k inputs per unit) trains a deep net where dense small init stalls"
SEEDS = ("000",)
DEPTH, WIDTH, K = 8, 64, 15
CRITERION = (
    "8x64 tanh MLP on digits, SGD + momentum 0.9, best lr of the grid per init (mean of 2 "
    "seeds): sparse(15) init ends with train loss < 0.5 log(10) and test accuracy > 0.8, "
    "dense N(0, 0.01^2) init ends with train loss > 0.9 log(10) (stalled) at every lr"
)

INITS = {
    f"sparse init, k = {K}": jdl.initializers.sparse(K),
    "dense small init N(0, 0.01²)": jdl.initializers.small_random(0.01),
}


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    epochs = _common.pick(quick, smoke, 40, 15, 2)
    n_train = _common.pick(quick, smoke, None, None, 256)
    lrs = np.array(_common.pick(quick, smoke, [0.003, 0.01, 0.03, 0.1], [0.003, 0.01, 0.03, 0.1],
                                [0.01, 0.1]), np.float32)
    seeds = _common.pick(quick, smoke, [0, 1, 2], [0, 1], [0])
    depth = _common.pick(quick, smoke, DEPTH, DEPTH, 2)
    (x, y), test = jdl.data.load_digits()
    x, y = x[:n_train], y[:n_train]
    found = {}
    for name, init in INITS.items():
        model = jdl.models.MLP(hidden=(WIDTH,) * depth, activation=nn.tanh, kernel_init=init)
        res = jdl.training.sweep(lambda learning_rate: jdl.sgd(learning_rate, momentum=0.9),
                                 {"learning_rate": lrs}, seeds, model, (x, y), epochs=epochs,
                                 batch_size=32, val_data=test)
        train_loss = np.nanmean(res.train_loss, axis=1)  # (lrs, epochs)
        val_acc = np.nanmean(res.val_accuracy, axis=1)
        final = np.where(np.isfinite(train_loss[:, -1]), train_loss[:, -1], np.inf)
        best = int(np.argmin(final))
        found[name] = dict(train_loss=train_loss, val_acc=val_acc, best=best,
                           final_loss=final, final_acc=val_acc[:, -1])
    log_c = math.log(10)
    sparse, dense = found[f"sparse init, k = {K}"], found["dense small init N(0, 0.01²)"]
    sparse_ok = (sparse["final_loss"][sparse["best"]] < 0.5 * log_c
                 and sparse["final_acc"][sparse["best"]] > 0.8)
    dense_stalls = bool(np.all(dense["final_loss"] > 0.9 * log_c))
    reproduced = bool(sparse_ok and dense_stalls)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    epochs_axis = np.arange(1, epochs + 1)
    for (name, r), color in zip(found.items(), ("tab:green", "tab:red")):
        for i, lr in enumerate(lrs):
            best = i == r["best"]
            axes[0].plot(epochs_axis, r["train_loss"][i], color=color, alpha=1 if best else 0.3,
                         lw=2 if best else 0.8, label=f"{name}, lr {lr:g}" if best else None)
        axes[1].semilogx(lrs, r["final_loss"], "o-", color=color, label=name)
    axes[0].axhline(log_c, color="0.5", ls=":", label="log(10): chance")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("train loss (mean over seeds)")
    axes[0].set_title(f"{depth}x{WIDTH} tanh MLP (faint: other lrs)")
    axes[0].legend(fontsize=8)
    axes[1].axhline(log_c, color="0.5", ls=":", label="log(10)")
    axes[1].set_xlabel("learning rate")
    axes[1].set_ylabel(f"train loss after {epochs} epochs")
    axes[1].set_title("Final loss across the lr grid")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [{"init": name, "learning rate": float(lr), "final train loss": r["final_loss"][i],
             "final test accuracy": r["final_acc"][i]}
            for name, r in found.items() for i, lr in enumerate(lrs)]
    measured = {
        "sparse: best final train loss": sparse["final_loss"][sparse["best"]],
        "sparse: test accuracy": sparse["final_acc"][sparse["best"]],
        "dense small: best final train loss": float(dense["final_loss"].min()),
        "dense small: test accuracy": dense["final_acc"][dense["best"]],
        "log(10)": log_c,
    }
    setup = (f"digits ({len(x)} train / {len(test[0])} test, standardized), MLP {depth}x{WIDTH} "
             f"tanh, SGD momentum 0.9, batch 32, {epochs} epochs, lrs {lrs.tolist()}, "
             f"seeds {list(seeds)}.")
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup))
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
