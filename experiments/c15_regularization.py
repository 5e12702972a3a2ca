"""Claim 15: L1/L2/elastic net, dropout and augmentation shrink the train/test gap; L1 sparsifies.

A 300-example digits subset and a 2x256 ReLU MLP trained by Adam (lr 1e-3) until it
memorizes the training set. Penalties enter as gradient terms in front of Adam
(``jdl.chain(jdl.add_elastic_net(l1, l2), jdl.adam(1e-3))``: l1 = l2 = 0 is the
baseline), all four in one vmapped ``jdl.training.sweep`` over 3 seeds; dropout (rate 0.5,
``MLP(dropout_rate=0.5)``) and augmentation (each image plus its four one-pixel shifts,
zero-filled, trained for the same number of steps) are separate sweeps. The gap is
train accuracy minus test accuracy after the last epoch. Sparsity: the fraction of
first-layer weights with |w| < 0.01 after a ``fit`` with each penalty.

    python experiments/c15_regularization.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c15_regularization"
CLAIM = 15
TITLE = "L1/L2/elastic net, dropout and augmentation reduce the train/test gap; L1 is sparse"
SEEDS = ("003", "004")
N_TRAIN, LR, BATCH, HIDDEN = 300, 1e-3, 32, (256, 256)
PENALTIES = {"none": (0.0, 0.0), "L2 (1e-2)": (0.0, 1e-2), "L1 (1e-3)": (1e-3, 0.0),
             "elastic net (5e-4, 5e-3)": (5e-4, 5e-3)}
CRITERION = (
    "300 digits, 2x256 ReLU MLP, Adam 1e-3, mean of 3 seeds: the train-minus-test accuracy gap "
    "is smaller than the unregularized one for each of L2 (1e-2), L1 (1e-3), elastic net "
    "(5e-4, 5e-3), dropout 0.5 and shift augmentation; and with L1 the fraction of "
    "first-layer weights with |w| < 0.01 is > 3x that without a penalty and above L2's"
)


def make_tx(l1, l2):
    return jdl.chain(jdl.add_elastic_net(l1, l2), jdl.adam(LR))


def shifted(images: np.ndarray) -> np.ndarray:
    """The images and their four one-pixel shifts (zero-filled), stacked: ``(5N, 8, 8)``."""
    out = [images]
    for axis, step in ((1, 1), (1, -1), (2, 1), (2, -1)):
        moved = np.roll(images, step, axis=axis)
        edge = [slice(None)] * 3
        edge[axis] = 0 if step > 0 else -1
        moved[tuple(edge)] = 0.0
        out.append(moved)
    return np.concatenate(out)


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    epochs = _common.pick(quick, smoke, 150, 60, 2)
    seeds = _common.pick(quick, smoke, [0, 1, 2], [0, 1, 2], [0])
    hidden = _common.pick(quick, smoke, HIDDEN, HIDDEN, (32,))
    (raw_x, raw_y), (raw_xt, yt) = jdl.data.load_digits(standardize=False)
    raw_x, y = raw_x[:N_TRAIN], raw_y[:N_TRAIN]
    x, xt = jdl.data.standardize(raw_x, raw_xt)
    aug_raw = shifted(raw_x.reshape(-1, 8, 8)).reshape(-1, 64)
    x_aug, xt_aug = jdl.data.standardize(aug_raw, raw_xt)
    y_aug = np.tile(y, 5)
    plain = jdl.models.MLP(hidden=hidden)
    zero = {"l1": np.zeros(1, np.float32), "l2": np.zeros(1, np.float32)}

    def summary(res, i=0):
        return dict(train=float(np.mean(res.train_accuracy[i, :, -1])),
                    test=float(np.mean(res.val_accuracy[i, :, -1])),
                    test_curve=np.mean(res.val_accuracy[i], axis=0),
                    train_curve=np.mean(res.train_accuracy[i], axis=0))

    found = {}
    hp = {"l1": np.array([v[0] for v in PENALTIES.values()], np.float32),
          "l2": np.array([v[1] for v in PENALTIES.values()], np.float32)}
    res = jdl.training.sweep(make_tx, hp, seeds, plain, (x, y), epochs=epochs, batch_size=BATCH,
                             val_data=(xt, yt))
    for i, name in enumerate(PENALTIES):
        found[name] = summary(res, i)
    res = jdl.training.sweep(make_tx, zero, seeds, jdl.models.MLP(hidden=hidden, dropout_rate=0.5),
                             (x, y), epochs=epochs, batch_size=BATCH, val_data=(xt, yt))
    found["dropout 0.5"] = summary(res)
    res = jdl.training.sweep(make_tx, zero, seeds, plain, (x_aug, y_aug),
                             epochs=max(1, epochs // 5), batch_size=BATCH, val_data=(xt_aug, yt))
    found["shift augmentation (x5 data)"] = summary(res)
    for r in found.values():
        r["gap"] = r["train"] - r["test"]

    # sparsity of the first layer after a fit with each penalty (seed 0)
    small = {}
    kernels = {}
    for name in ("none", "L2 (1e-2)", "L1 (1e-3)"):
        state = jdl.training.create_train_state(plain, make_tx(*PENALTIES[name]),
                                                jax.random.key(0), x[:1])
        state, _ = jdl.training.fit(state, (x, y), epochs=epochs, batch_size=BATCH,
                                    progress=False)
        kernels[name] = np.asarray(state.params["dense_0"]["kernel"]).ravel()
        small[name] = float(np.mean(np.abs(kernels[name]) < 0.01))
    for name, r in found.items():
        r["small"] = small.get(name, float("nan"))

    base = found["none"]["gap"]
    gaps_smaller = all(r["gap"] < base for n, r in found.items() if n != "none")
    sparse = small["L1 (1e-3)"] > 3 * small["none"] and small["L1 (1e-3)"] > small["L2 (1e-2)"]
    reproduced = bool(gaps_smaller and sparse)

    fig, axes = plt.subplots(1, 3, figsize=(18, 4.6))
    names = list(found)
    colors = plt.cm.tab10(np.arange(len(names)))
    pos = np.arange(len(names))
    axes[0].bar(pos - 0.2, [found[n]["train"] for n in names], 0.4, color="0.6", label="train")
    axes[0].bar(pos + 0.2, [found[n]["test"] for n in names], 0.4, color=colors, label="test")
    for p, n in zip(pos, names):
        axes[0].text(p, 0.81, f"gap\n{found[n]['gap']:.3f}", ha="center", fontsize=7)
    axes[0].set_xticks(pos, names, rotation=25, ha="right", fontsize=7)
    axes[0].set_ylim(0.8, 1.01)
    axes[0].set_xlabel("regularizer")
    axes[0].set_ylabel("accuracy after training (mean of seeds)")
    axes[0].set_title(f"Train vs test accuracy, {N_TRAIN} training digits")
    axes[0].legend(fontsize=8)
    for n, color in zip(names, colors):
        c = found[n]["test_curve"]
        axes[1].plot(np.linspace(0, 1, len(c)), c, color=color, label=n)
    axes[1].set_xlabel("fraction of training")
    axes[1].set_ylabel("test accuracy")
    axes[1].set_title("Test accuracy during training")
    axes[1].legend(fontsize=7)
    bins = np.linspace(-0.4, 0.4, 81)
    for n, color in zip(kernels, ("0.3", "tab:orange", "tab:green")):
        axes[2].hist(kernels[n], bins=bins, histtype="step", color=color,
                     label=f"{n}: {small[n]:.1%} with |w| < 0.01")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("first-layer weight")
    axes[2].set_ylabel("count")
    axes[2].set_title("L1 drives weights to zero")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [{"regularizer": n, "train accuracy": r["train"], "test accuracy": r["test"],
             "gap": r["gap"], "first-layer |w| < 0.01": r["small"] if n in small else "-"}
            for n, r in found.items()]
    measured = {f"gap {n}": r["gap"] for n, r in found.items()}
    measured.update({f"|w|<0.01 {n}": v for n, v in small.items()})
    setup = (f"digits: first {N_TRAIN} training examples, all {len(yt)} test; MLP {hidden} ReLU, "
             f"Adam {LR}, batch {BATCH}, {epochs} epochs ({max(1, epochs // 5)} on the x5 "
             f"augmented set: same steps), seeds {list(seeds)}; augmentation's train accuracy "
             f"is on the augmented set.")
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup))
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
