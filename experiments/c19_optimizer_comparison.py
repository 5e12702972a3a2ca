"""Claim 19: ten optimizers on the digits, each at the learning rate a vmapped sweep picks.

SGD, momentum, Nesterov, AdaGrad, RMSProp, Adadelta, Adam, AdamW, NAdam and AMSGrad train
the same 2x64 ReLU MLP (batch 64). For each optimizer one ``jdl.training.sweep`` (one
jit+vmap program) trains every learning rate of a log grid x 2 seeds; the learning rate
is chosen by the final TRAINING loss (the test set plays no part in the choice), and the
test accuracy and the loss curves at that rate are reported.

    python experiments/c19_optimizer_comparison.py [--quick] [--out DIR]
"""

from __future__ import annotations

import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c19_optimizer_comparison"
CLAIM = 19
TITLE = "Ten optimizers on digits, lr chosen by a vmapped sweep: test accuracy and loss curves"
SEEDS = ("002", "004")
BATCH = 64
OPTIMIZERS = {
    "SGD": lambda learning_rate: jdl.sgd(learning_rate),
    "momentum 0.9": lambda learning_rate: jdl.sgd(learning_rate, momentum=0.9),
    "Nesterov 0.9": lambda learning_rate: jdl.sgd(learning_rate, momentum=0.9, nesterov=True),
    "AdaGrad": lambda learning_rate: jdl.adagrad(learning_rate),
    "RMSProp": lambda learning_rate: jdl.rmsprop(learning_rate),
    "Adadelta": lambda learning_rate: jdl.adadelta(learning_rate),
    "Adam": lambda learning_rate: jdl.adam(learning_rate),
    "AdamW (wd 1e-4)": lambda learning_rate: jdl.adamw(learning_rate, weight_decay=1e-4),
    "NAdam": lambda learning_rate: jdl.nadam(learning_rate),
    "AMSGrad": lambda learning_rate: jdl.amsgrad(learning_rate),
}
CRITERION = (
    "2x64 ReLU MLP on digits, batch 64, lr grid 1e-4..3.16 (x5.6), mean of 2 seeds, lr chosen "
    "by final training loss: (a) every one of the 10 optimizers reaches >= 90% test accuracy "
    "at its chosen lr; (b) the best and worst of these test accuracies differ by <= 5 points; "
    "(c) for every optimizer some lr of the grid ends >= 10 points below its chosen lr "
    "(the lr matters more than the optimizer)"
)


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    epochs = _common.pick(quick, smoke, 30, 8, 1)
    seeds = _common.pick(quick, smoke, [0, 1, 2], [0, 1], [0])
    n_train = _common.pick(quick, smoke, None, None, 256)
    names = _common.pick(quick, smoke, list(OPTIMIZERS), list(OPTIMIZERS), ["SGD", "Adam"])
    lrs = np.logspace(-4, 0.5, _common.pick(quick, smoke, 7, 7, 2)).astype(np.float32)
    (x, y), test = jdl.data.load_digits()
    x, y = x[:n_train], y[:n_train]
    model = jdl.models.MLP(hidden=(64, 64))
    found = {}
    for name in names:
        res = jdl.training.sweep(OPTIMIZERS[name], {"learning_rate": lrs}, seeds, model, (x, y),
                                 epochs=epochs, batch_size=BATCH, val_data=test)
        train = np.nan_to_num(np.nanmean(res.train_loss, axis=1), nan=np.inf)  # (lrs, epochs)
        acc = np.nan_to_num(np.nanmean(res.val_accuracy, axis=1))
        best = int(np.argmin(train[:, -1]))
        found[name] = dict(lr=float(lrs[best]), train=train[best],
                           val=np.nanmean(res.val_loss, axis=1)[best], acc=acc[best],
                           accs=acc[:, -1], final_train=train[:, -1])
    accs = np.array([r["acc"][-1] for r in found.values()])
    a = bool(np.all(accs >= 0.9))
    b = bool(accs.max() - accs.min() <= 0.05)
    c = all(r["accs"].min() <= r["acc"][-1] - 0.10 for r in found.values())
    reproduced = bool(a and b and c)

    fig, axes = plt.subplots(1, 3, figsize=(19, 4.8))
    colors = plt.cm.tab10(np.arange(len(found)))
    ep = np.arange(1, epochs + 1)
    for (name, r), color in zip(found.items(), colors):
        axes[0].semilogy(ep, r["train"], color=color, label=f"{name} (lr {r['lr']:.3g})")
        axes[1].plot(ep, r["acc"], color=color, label=f"{name}: {r['acc'][-1]:.3f}")
        axes[2].semilogx(lrs, r["accs"], "o-", ms=3, color=color, label=name)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("training loss (whole set, mean of seeds)")
    axes[0].set_title("Training loss at each optimizer's chosen lr")
    axes[0].legend(fontsize=7)
    axes[1].set_ylim(0.8, 1.0)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("test accuracy")
    axes[1].set_title("Test accuracy at the chosen lr")
    axes[1].legend(fontsize=7)
    axes[2].set_xlabel("learning rate")
    axes[2].set_ylabel(f"test accuracy after {epochs} epochs")
    axes[2].set_title("The sweep: accuracy across the lr grid")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [{"optimizer": name, "chosen lr": r["lr"], "final train loss": r["train"][-1],
             "final test loss": r["val"][-1], "final test accuracy": r["acc"][-1],
             "worst-lr test accuracy": r["accs"].min()} for name, r in found.items()]
    measured = {f"{name} test acc": r["acc"][-1] for name, r in found.items()}
    measured["spread (max - min)"] = float(accs.max() - accs.min())
    setup = (f"digits ({len(x)} train / {len(test[0])} test), MLP (64, 64) ReLU, batch {BATCH}, "
             f"{epochs} epochs, seeds {list(seeds)}, lrs {np.round(lrs, 5).tolist()}; default "
             f"betas/eps of each optimizer.")
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup))
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
