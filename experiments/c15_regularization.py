"""Claim 15: L1/L2/elastic net, dropout and augmentation shrink the train/test gap; L1 sparsifies.

R. Neychev, "Optimization and regularization in Deep Learning":

    "Problem: overfitting [...] Adding some extra term to the loss function. [...] L2
    regularization [...] L1 regularization [...] Elastic Net (L1 + L2) [...] Dropout: Some
    neurons are "dropped" during training. Prevents overfitting. [...] Regularization:
    data augmentation"

On the digits (300 training examples) and on MNIST-1D (500; Greydanus 2020, "Scaling down
deep learning"), a 2x256 ReLU MLP trained by SGD with momentum until it memorizes the
training set; the rest of each training split is the validation set, the test split
gives the reported accuracies. Penalties enter as gradient terms in front of SGD
(``jdl.chain(jdl.add_elastic_net(l1, l2), jdl.sgd(0.02, momentum=0.9))``; in front of
Adam its second-moment scaling would dilute them — Loshchilov & Hutter 2019), every
strength on a x2 grid in one vmapped ``jdl.training.sweep``; dropout
(``MLP(dropout_rate=p)``) over a grid of rates; augmentation (each input plus four
shifted copies, zero-filled, trained for the same number of steps) has no strength. Each strength is the one with the
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
LR, MOMENTUM, BATCH, HIDDEN = 0.02, 0.9, 32, (256, 256)
N_TUNE = 3
# name -> (loader kwargs-free call, training examples; the rest of the training split
# validates, the test split measures)
DATASETS = {"digits": (jdl.data.load_digits, 300), "MNIST-1D": (jdl.data.load_mnist1d, 500)}
GRIDS = {  # name -> (l1 grid, l2 grid), x2 steps
    "L2": (np.zeros(9), 2.0 ** np.arange(-12, -3)),
    "L1": (2.0 ** np.arange(-16, -7), np.zeros(9)),
    "elastic net (l2 = 10 l1)": (2.0 ** np.arange(-16, -7), 10 * 2.0 ** np.arange(-16, -7)),
}
RATES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
AUGMENT = "shift augmentation (x5 data)"


def make_tx(l1, l2):
    """The penalties' gradients added in front of SGD with momentum (no adaptive scaling)."""
    return jdl.chain(jdl.add_elastic_net(l1, l2), jdl.sgd(LR, momentum=MOMENTUM))


def shifted(x: np.ndarray, dataset: str) -> np.ndarray:
    """The inputs and four shifted copies (zero-filled), stacked: ``(5N, features)``.

    Digits: one pixel up, down, left and right of the 8x8 image. MNIST-1D: one and two
    positions left and right along the 40-long sequence.
    """
    if dataset == "digits":
        images, moves = x.reshape(-1, 8, 8), ((1, 1), (1, -1), (2, 1), (2, -1))
    else:
        images, moves = x, ((1, 1), (1, -1), (1, 2), (1, -2))
    out = [images]
    for axis, step in moves:
        moved = np.roll(images, step, axis=axis)
        edge = [slice(None)] * images.ndim
        edge[axis] = slice(0, step) if step > 0 else slice(step, None)
        moved[tuple(edge)] = 0.0
        out.append(moved)
    return np.concatenate(out).reshape(5 * len(x), -1)


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


def one_dataset(dataset: str, quick: bool, smoke: bool) -> dict:
    """Tune every regularizer on validation, then measure gaps and sparsity on fresh seeds."""
    load, n_train = DATASETS[dataset]
    epochs = _common.pick(quick, smoke, 100, 30, 2)
    n_eval = _common.pick(quick, smoke, ENTRY["seeds"], 3, 2)
    n_tune = _common.pick(quick, smoke, N_TUNE, 2, 1)
    hidden = _common.pick(quick, smoke, HIDDEN, HIDDEN, (32,))
    stride = _common.pick(quick, smoke, 1, 2, 4)  # quick: x4 grids, every other rate
    grids = {k: (a[::stride], b[::stride]) for k, (a, b) in GRIDS.items()}
    rates = RATES[::stride]
    tune_seeds, eval_seeds = list(range(100, 100 + n_tune)), list(range(n_eval))
    (raw_all, y_all), (raw_xt, yt) = load(standardize=False)
    raw_all, y_all, raw_xt = np.asarray(raw_all), np.asarray(y_all), np.asarray(raw_xt)
    raw_x, y = raw_all[:n_train], y_all[:n_train]
    raw_v, yv = raw_all[n_train:], y_all[n_train:]
    x, xt = jdl.data.standardize(raw_x, raw_xt)
    xv = jdl.data.standardize(raw_x, raw_v)[1]
    aug_raw = shifted(raw_x, dataset)
    x_aug, xt_aug = jdl.data.standardize(aug_raw, raw_xt)
    y_aug = np.tile(y, 5)
    plain = jdl.models.MLP(hidden=hidden)
    zero = {"l1": [0.0], "l2": [0.0]}

    # tuning on the validation split, separate seeds
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
    found[AUGMENT] = dict(train=tr[0], test=te[0])
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
    tests = [_common.judge(e, 0.0, "above") for e in gap_cut.values()]
    tests += [_common.judge(l1_vs_none, 0.0, "above"), _common.judge(l1_vs_l2, 0.0, "above")]
    return dict(
        found=found,
        gap_cut=gap_cut,
        small=small,
        kernels=kernels,
        l1_vs_none=l1_vs_none,
        l1_vs_l2=l1_vs_l2,
        tuned=tuned,
        tuning=tuning,
        verdict=_common.combine(tests),
        epochs=epochs,
        n_eval=n_eval,
        n_tune=n_tune,
        hidden=hidden,
        sizes=(len(y), len(yv), len(yt)),
    )


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    results = {d: one_dataset(d, quick, smoke) for d in DATASETS}
    verdict = _common.combine([r["verdict"] for r in results.values()])

    fig, axes = plt.subplots(len(results), 3, figsize=(19, 4.8 * len(results)), squeeze=False)
    for row, (dname, r) in zip(axes, results.items()):
        names = list(r["gap_cut"])
        colors = plt.cm.tab10(np.arange(1, len(names) + 1))
        est = list(r["gap_cut"].values())
        pos = np.arange(len(names))
        row[0].errorbar(
            pos,
            [e.mean for e in est],
            yerr=[[e.mean - e.lo for e in est], [e.hi - e.mean for e in est]],
            fmt="none",
            ecolor="k",
            capsize=4,
            label=f"paired gap cut, mean of {r['n_eval']} seeds, 95% CI",
        )
        row[0].scatter(pos, [e.mean for e in est], c=colors, zorder=3)
        row[0].axhline(0.0, color="0.5", lw=1)
        row[0].set_xticks(pos, names, rotation=25, ha="right", fontsize=7)
        row[0].set_xlabel("regularizer (tuned strength)")
        row[0].set_ylabel("gap(none) - gap(regularizer), accuracy")
        row[0].set_title(
            f"{dname}: train/test gap cut vs no regularizer "
            f"(gap none {np.mean(r['found']['none']['gap']):.3f})"
        )
        row[0].legend(fontsize=7)
        for (name, (grid, acc)), color in zip(r["tuning"].items(), colors):
            row[1].plot(
                grid / r["tuned"][name]["strength"],
                acc,
                "o-",
                ms=3,
                color=color,
                label=f"{name} (chosen {r['tuned'][name]['strength']:.3g})",
            )
        _common.finish_axes(
            row[1],
            "strength / chosen strength (x2 grid; dropout: rate ratio)",
            "validation accuracy (fraction)",
            f"{dname}: tuning each strength ({r['n_tune']} seeds)",
            logx=True,
            logy=False,
            legend_size=7,
        )
        bins = np.linspace(-0.4, 0.4, 81)
        for n, color in zip(r["kernels"], ("0.3", "tab:orange", "tab:green")):
            row[2].hist(
                r["kernels"][n],
                bins=bins,
                histtype="step",
                color=color,
                label=f"{n}: {np.mean(r['small'][n]):.1%} with |w| < 0.01 (mean of {r['n_eval']})",
            )
        row[2].set_yscale("log")
        row[2].set_xlabel("first-layer weight (seed 0)")
        row[2].set_ylabel("count of weights")
        row[2].set_title(f"{dname}: first-layer weights with the tuned penalties")
        row[2].legend(fontsize=7)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows, measured, tune_rows = [], {}, []
    for dname, r in results.items():
        for n, f in r["found"].items():
            rows.append(
                {
                    "dataset": dname,
                    "regularizer": n,
                    "strength": r["tuned"][n]["strength"] if n in r["tuned"] else "-",
                    "train accuracy": _common.mean_ci(f["train"]),
                    "test accuracy": _common.mean_ci(f["test"]),
                    "gap": _common.mean_ci(f["gap"]),
                    "gap cut vs none, paired": r["gap_cut"].get(n, "-"),
                    "first-layer |w| < 0.01": _common.mean_ci(r["small"][n])
                    if n in r["small"]
                    else "-",
                }
            )
        edges = [n for n, t in r["tuned"].items() if t["edge"]]
        measured.update(
            {f"{dname} {n}: tuned strength": t["strength"] for n, t in r["tuned"].items()}
        )
        measured[f"{dname}: tuned strengths at a grid edge"] = ", ".join(edges) or "none"
        measured[f"{dname}: gap none"] = _common.mean_ci(r["found"]["none"]["gap"])
        measured.update(
            {f"{dname}: gap none - gap {n}, paired": e for n, e in r["gap_cut"].items()}
        )
        measured.update(
            {
                f"{dname}: first-layer |w| < 0.01, {n}": _common.mean_ci(v)
                for n, v in r["small"].items()
            }
        )
        measured[f"{dname}: log10(|w|<0.01 L1 / (3 x none)), paired"] = r["l1_vs_none"]
        measured[f"{dname}: |w|<0.01 L1 - L2, paired"] = r["l1_vs_l2"]
        measured[f"{dname}: verdict"] = str(r["verdict"])
        tune_rows += [
            {
                "dataset": dname,
                "regularizer": n,
                "grid": f"{g[0]:.3g} .. {g[-1]:.3g}",
                "chosen": r["tuned"][n]["strength"],
                "at grid edge": r["tuned"][n]["edge"],
            }
            for n, (g, _) in r["tuning"].items()
        ]
    conclusion = "; ".join(
        f"{d}: gap {np.mean(r['found']['none']['gap']):.3f} without a regularizer, cut by "
        + ", ".join(f"{n.split(' (')[0]} {e.mean:+.3f}" for n, e in r["gap_cut"].items())
        + f"; L1 leaves {np.mean(r['small']['L1']):.0%} of first-layer |w| < 0.01 vs "
        f"{np.mean(r['small']['none']):.0%} without"
        for d, r in results.items()
    )
    theory = ""
    if verdict != "reproduced":
        theory = (
            "A penalty tuned for validation accuracy is as strong as helps generalization and "
            "no stronger; a net that still fits its small training set shrinks the gap only "
            "as far as the test accuracy rises, which can sit inside the seed-to-seed noise. "
            "With plain SGD the L1 subgradient moves every weight lr x l1 towards zero per "
            "step, so weights whose data gradient is smaller than l1 oscillate around zero "
            "within about lr x l1 of it: L1 sets many weights near zero, not exactly zero, "
            "and L2 shrinks all weights in proportion, which also pushes small ones below a "
            "fixed cut; whether L1 leaves more weights under 0.01 than L2 depends on the "
            "strengths validation picked for each."
        )
    first = next(iter(results.values()))
    setup = (
        "; ".join(
            f"{d}: {r['sizes'][0]} train, the remaining {r['sizes'][1]} training-split "
            f"examples validate, {r['sizes'][2]} test"
            for d, r in results.items()
        )
        + f". MLP {first['hidden']} ReLU, SGD lr {LR} momentum {MOMENTUM} (the penalty "
        f"gradients are added before it, so they are not rescaled), batch {BATCH}, "
        f"{first['epochs']} epochs ({max(1, first['epochs'] // 5)} on the x5 augmented set: "
        f"same steps); {first['n_tune']} tuning seeds, {first['n_eval']} evaluation seeds; "
        "augmentation's train accuracy is on the augmented set."
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
        extra_tables={"Tuned strengths": tune_rows},
    )


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
