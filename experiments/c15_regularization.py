"""Claim 15: L1/L2/elastic net, dropout and augmentation shrink the train/test gap; L1 sparsifies.

R. Neychev, "Optimization and regularization in Deep Learning":

    "Problem: overfitting [...] Adding some extra term to the loss function. [...] L2
    regularization [...] L1 regularization [...] Elastic Net (L1 + L2) [...] Dropout: Some
    neurons are "dropped" during training. Prevents overfitting. [...] Regularization:
    data augmentation"

A 300-example digits subset and a 2x256 ReLU MLP trained by Adam (lr 1e-3) until it
memorizes the training set; 300 other training-split examples are the validation set,
the test split gives the reported accuracies. Penalties enter as gradient terms in front
of Adam (``jdl.chain(jdl.add_elastic_net(l1, l2), jdl.adam(1e-3))``), every strength on a
x2 grid in one vmapped ``jdl.training.sweep``; dropout (``MLP(dropout_rate=p)``) over a
grid of rates; augmentation (each image plus its four one-pixel shifts, zero-filled,
trained for the same number of steps) has no strength. Each strength is the one with the
best mean validation accuracy on 3 tuning seeds; the gap (train minus test accuracy) is
then measured on 10 fresh seeds, paired with the unregularized net. Sparsity: the
fraction of first-layer weights with |w| < 0.01 after a ``fit`` with the tuned L1 and L2
strengths and with none, on the same 10 seeds.

    python experiments/c15_regularization.py [--quick] [--out DIR]
"""

from __future__ import annotations

import _common
import jax
import numpy as np
from _common import plt

import jaxopt_dl as jdl

NAME = "c15_regularization"
CLAIM = 15
ENTRY = _common.criteria("c15")
TITLE = ENTRY["title"]
SEEDS = ("003", "004")
CRITERION = ENTRY["criterion"]
N_TRAIN, N_VAL, LR, BATCH, HIDDEN = 300, 300, 1e-3, 32, (256, 256)
N_TUNE = 3
GRIDS = {  # name -> (l1 grid, l2 grid), x2 steps
    "L2": (np.zeros(9), 2.0 ** np.arange(-12, -3)),
    "L1": (2.0 ** np.arange(-16, -7), np.zeros(9)),
    "elastic net (l2 = 10 l1)": (2.0 ** np.arange(-16, -7), 10 * 2.0 ** np.arange(-16, -7)),
}
RATES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


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


def sweep(model, hp, seeds, data, val, epochs):
    """``(train accuracy, val accuracy)`` after the last epoch, each ``(settings, seeds)``."""
    res = jdl.training.sweep(
        make_tx,
        {k: np.asarray(v, np.float32) for k, v in hp.items()},
        seeds,
        model,
        data,
        epochs=epochs,
        batch_size=BATCH,
        val_data=val,
        eval_every_epoch=False,
    )
    return np.asarray(res.train_accuracy[..., -1]), np.asarray(res.val_accuracy[..., -1])


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    epochs = _common.pick(quick, smoke, 150, 60, 2)
    n_eval = _common.pick(quick, smoke, ENTRY["seeds"], 5, 2)
    n_tune = _common.pick(quick, smoke, N_TUNE, 2, 1)
    hidden = _common.pick(quick, smoke, HIDDEN, HIDDEN, (32,))
    grids = (
        GRIDS
        if not smoke
        else {k: (a[::4], b[::4]) for k, a, b in ((k, *v) for k, v in GRIDS.items())}
    )
    rates = RATES if not smoke else RATES[::4]
    tune_seeds, eval_seeds = list(range(100, 100 + n_tune)), list(range(n_eval))
    (raw_all, y_all), (raw_xt, yt) = jdl.data.load_digits(standardize=False)
    raw_x, y = raw_all[:N_TRAIN], y_all[:N_TRAIN]
    raw_v, yv = raw_all[N_TRAIN : N_TRAIN + N_VAL], y_all[N_TRAIN : N_TRAIN + N_VAL]
    x, xt = jdl.data.standardize(raw_x, raw_xt)
    xv = jdl.data.standardize(raw_x, raw_v)[1]
    aug_raw = shifted(raw_x.reshape(-1, 8, 8)).reshape(-1, 64)
    x_aug, xt_aug = jdl.data.standardize(aug_raw, raw_xt)
    y_aug = np.tile(y, 5)
    plain = jdl.models.MLP(hidden=hidden)
    zero = {"l1": [0.0], "l2": [0.0]}

    # tuning on validation
    tuned, tuning = {}, {}
    for name, (l1, l2) in grids.items():
        _, acc = sweep(plain, {"l1": l1, "l2": l2}, tune_seeds, (x, y), (xv, yv), epochs)
        i = int(np.argmax(acc.mean(1)))
        tuned[name] = dict(
            l1=float(l1[i]),
            l2=float(l2[i]),
            edge=i in (0, len(l1) - 1),
            strength=float(l1[i] if name != "L2" else l2[i]),
        )
        tuning[name] = (l1 if name != "L2" else l2, acc.mean(1))
    drop_acc = np.array(
        [
            sweep(
                jdl.models.MLP(hidden=hidden, dropout_rate=r),
                zero,
                tune_seeds,
                (x, y),
                (xv, yv),
                epochs,
            )[1].mean()
            for r in rates
        ]
    )
    i = int(np.argmax(drop_acc))
    tuned["dropout"] = dict(
        rate=float(rates[i]), edge=i in (0, len(rates) - 1), strength=float(rates[i])
    )
    tuning["dropout"] = (np.asarray(rates), drop_acc)

    # evaluation on fresh seeds, test split
    found = {}
    names = ["none", *grids]
    hp = {
        "l1": [0.0] + [tuned[n]["l1"] for n in grids],
        "l2": [0.0] + [tuned[n]["l2"] for n in grids],
    }
    tr, te = sweep(plain, hp, eval_seeds, (x, y), (xt, yt), epochs)
    for i, name in enumerate(names):
        found[name] = dict(train=tr[i], test=te[i])
    tr, te = sweep(
        jdl.models.MLP(hidden=hidden, dropout_rate=tuned["dropout"]["rate"]),
        zero,
        eval_seeds,
        (x, y),
        (xt, yt),
        epochs,
    )
    found["dropout"] = dict(train=tr[0], test=te[0])
    tr, te = sweep(plain, zero, eval_seeds, (x_aug, y_aug), (xt_aug, yt), max(1, epochs // 5))
    found["shift augmentation (x5 data)"] = dict(train=tr[0], test=te[0])
    for r in found.values():
        r["gap"] = r["train"] - r["test"]
    gap_cut = {
        n: _common.paired_ci(found["none"]["gap"], r["gap"])
        for n, r in found.items()
        if n != "none"
    }

    # sparsity of the first layer after a fit, per seed
    small = {n: [] for n in ("none", "L2", "L1")}
    kernels = {}
    for name in small:
        l1, l2 = (0.0, 0.0) if name == "none" else (tuned[name]["l1"], tuned[name]["l2"])
        for seed in eval_seeds:
            state = jdl.training.create_train_state(
                plain, make_tx(l1, l2), jax.random.key(seed), x[:1]
            )
            state, _ = jdl.training.fit(
                state, (x, y), epochs=epochs, batch_size=BATCH, seed=seed, progress=False
            )
            kernel = np.asarray(state.params["dense_0"]["kernel"]).ravel()
            small[name].append(float(np.mean(np.abs(kernel) < 0.01)))
            kernels.setdefault(name, kernel)
    small = {n: np.asarray(v) for n, v in small.items()}
    l1_vs_none = _common.paired_ci(np.log10(small["L1"]), np.log10(3 * small["none"]))
    l1_vs_l2 = _common.paired_ci(small["L1"], small["L2"])

    verdicts = [_common.judge(e, 0.0, "above") for e in gap_cut.values()]
    verdicts += [_common.judge(l1_vs_none, 0.0, "above"), _common.judge(l1_vs_l2, 0.0, "above")]
    verdict = _common.combine(verdicts)
    edges = [n for n, t in tuned.items() if t["edge"]]

    fig, axes = plt.subplots(1, 3, figsize=(19, 4.8))
    names = list(found)
    colors = plt.cm.tab10(np.arange(len(names)))
    pos = np.arange(len(names))
    for key, off, label in (("train", -0.2, "train"), ("test", 0.2, "test")):
        est = [_common.mean_ci(found[n][key]) for n in names]
        axes[0].bar(
            pos + off,
            [e.mean for e in est],
            0.4,
            color="0.6" if key == "train" else colors,
            yerr=[[e.mean - e.lo for e in est], [e.hi - e.mean for e in est]],
            capsize=3,
            label=f"{label} accuracy (mean of {n_eval} seeds, 95% CI)",
        )
    for p, n in zip(pos, names):
        axes[0].text(p, 0.03, f"gap\n{np.mean(found[n]['gap']):.3f}", ha="center", fontsize=7)
    axes[0].set_xticks(pos, names, rotation=25, ha="right", fontsize=7)
    axes[0].set_ylim(0.0, 1.08)
    axes[0].set_xlabel("regularizer (tuned strength)")
    axes[0].set_ylabel("accuracy after training (fraction)")
    axes[0].set_title(f"Train vs test accuracy, {N_TRAIN} training digits")
    axes[0].legend(fontsize=7, loc="lower right")
    for (name, (grid, acc)), color in zip(tuning.items(), colors[1:]):
        scale = grid / tuned[name]["strength"]
        axes[1].plot(
            scale,
            acc,
            "o-",
            ms=3,
            color=color,
            label=f"{name} (chosen {tuned[name]['strength']:.3g})",
        )
    _common.finish_axes(
        axes[1],
        "strength / chosen strength (x2 grid; dropout: rate ratio)",
        "validation accuracy (fraction)",
        f"Tuning each strength ({n_tune} seeds)",
        logx=True,
        logy=False,
        legend_size=7,
    )
    bins = np.linspace(-0.4, 0.4, 81)
    for n, color in zip(kernels, ("0.3", "tab:orange", "tab:green")):
        axes[2].hist(
            kernels[n],
            bins=bins,
            histtype="step",
            color=color,
            label=f"{n}: {np.mean(small[n]):.1%} with |w| < 0.01 (mean of {n_eval})",
        )
    axes[2].set_yscale("log")
    axes[2].set_xlabel("first-layer weight (seed 0)")
    axes[2].set_ylabel("count of weights")
    axes[2].set_title("First-layer weights with the tuned penalties")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [
        {
            "regularizer": n,
            "strength": tuned[n]["strength"] if n in tuned else "-",
            "train accuracy": _common.mean_ci(r["train"]),
            "test accuracy": _common.mean_ci(r["test"]),
            "gap": _common.mean_ci(r["gap"]),
            "gap cut vs none, paired": gap_cut.get(n, "-"),
            "first-layer |w| < 0.01": _common.mean_ci(small[n]) if n in small else "-",
        }
        for n, r in found.items()
    ]
    measured = {f"{n}: tuned strength": t["strength"] for n, t in tuned.items()}
    measured["tuned strengths at a grid edge"] = ", ".join(edges) if edges else "none"
    measured["gap none"] = _common.mean_ci(found["none"]["gap"])
    measured.update({f"gap none - gap {n}, paired": e for n, e in gap_cut.items()})
    measured.update({f"first-layer |w| < 0.01, {n}": _common.mean_ci(v) for n, v in small.items()})
    measured["log10(|w|<0.01 L1 / (3 x none)), paired"] = l1_vs_none
    measured["|w|<0.01 L1 - L2, paired"] = l1_vs_l2
    conclusion = (
        f"unregularized gap {np.mean(found['none']['gap']):.3f}; tuned regularizers cut it by "
        + ", ".join(f"{n} {e.mean:+.3f}" for n, e in gap_cut.items())
        + f"; L1 leaves {np.mean(small['L1']):.1%} of first-layer weights with |w| < 0.01 vs "
        f"{np.mean(small['none']):.1%} without a penalty"
    )
    theory = ""
    if verdict != "reproduced":
        theory = (
            "A penalty tuned for validation accuracy is as strong as helps generalization and "
            "no stronger; on 300 examples a 2x256 net still fits its training set, so the gap "
            "shrinks only as far as the test accuracy rises. L1's proximal effect makes "
            "weights hover near zero (a subgradient step of lr x l1 around 0 with Adam's "
            "normalized steps) rather than exactly zero, and with the strength chosen for "
            "accuracy it can be too weak to push a large fraction below 0.01."
        )
    setup = (
        f"digits: first {N_TRAIN} training examples, next {N_VAL} validation, all {len(yt)} "
        f"test; MLP {hidden} ReLU, Adam {LR}, batch {BATCH}, {epochs} epochs "
        f"({max(1, epochs // 5)} on the x5 augmented set: same steps); tuning seeds "
        f"{tune_seeds}, evaluation seeds 0..{n_eval - 1}; augmentation's train accuracy "
        f"is on the augmented set."
    )
    tune_rows = [
        {
            "regularizer": n,
            "grid": f"{g[0]:.3g} .. {g[-1]:.3g}",
            "chosen": tuned[n]["strength"],
            "at grid edge": tuned[n]["edge"],
        }
        for n, (g, _) in tuning.items()
    ]
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
        extra_tables={"Tuned strengths": tune_rows},
    )


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
