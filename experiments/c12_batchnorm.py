"""Claim 12: batch norm reaches a target accuracy in fewer steps and tolerates a larger lr.

The lecture's Inception table (Ioffe & Szegedy 2015: BN-Baseline, BN-x5, BN-x30 reach the
Inception accuracy in 2.1-13.3 M steps instead of 31 M), reproduced in kind on the digits:
a 3x64 ReLU MLP with and without batch norm, plain SGD (batch 32), a log grid of learning
rates (one vmapped ``jdl.training.sweep`` per model, 2 seeds); "steps to target" is the
first epoch end at which the mean test accuracy reaches 95%, in optimization steps. Then
BN is also run at 5x and 30x the plain net's best learning rate (the BN-x5 / BN-x30 rows).

    python experiments/c12_batchnorm.py [--quick] [--out DIR]
"""

from __future__ import annotations

import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c12_batchnorm"
CLAIM = 12
TITLE = "Batch norm reaches a target accuracy in fewer steps and tolerates a 5-30x larger lr"
SEEDS = ("003",)
TARGET, BATCH, HIDDEN = 0.95, 32, (64, 64, 64)
CRITERION = (
    "3x64 ReLU MLP on digits, plain SGD batch 32, lr grid 1e-3..10 (x3.16), mean of 2 seeds, "
    "target 95% test accuracy: (a) BN's fewest steps to target over the grid < the plain "
    "net's; (b) the largest grid lr that still reaches the target is >= 5x larger with BN; "
    "(c) BN at 5x and at 30x the plain net's best lr still reaches the target"
)


def _steps_to_target(val_acc: np.ndarray, steps_per_epoch: int) -> np.ndarray:
    """(lrs, epochs) accuracy -> (lrs,) steps at the first epoch end >= TARGET (inf if never)."""
    hit = val_acc >= TARGET
    first = np.argmax(hit, axis=1)
    return np.where(hit.any(axis=1), (first + 1) * steps_per_epoch, np.inf)


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    epochs = _common.pick(quick, smoke, 30, 12, 1)
    seeds = _common.pick(quick, smoke, [0, 1, 2], [0, 1], [0])
    n_train = _common.pick(quick, smoke, None, None, 256)
    grid = np.logspace(-3, 1, _common.pick(quick, smoke, 9, 9, 3)).astype(np.float32)
    (x, y), test = jdl.data.load_digits()
    x, y = x[:n_train], y[:n_train]
    steps_per_epoch = len(x) // BATCH

    def sweep(use_bn, lrs):
        model = jdl.models.MLP(hidden=HIDDEN, use_batchnorm=use_bn)
        res = jdl.training.sweep(lambda learning_rate: jdl.sgd(learning_rate),
                                 {"learning_rate": np.asarray(lrs, np.float32)}, seeds, model,
                                 (x, y), epochs=epochs, batch_size=BATCH, val_data=test)
        acc = np.nan_to_num(np.nanmean(res.val_accuracy, axis=1))  # (lrs, epochs)
        return acc, _steps_to_target(acc, steps_per_epoch)

    plain_acc, plain_steps = sweep(False, grid)
    best = int(np.argmin(plain_steps)) if np.isfinite(plain_steps).any() else int(
        np.argmax(plain_acc[:, -1]))
    lr_star = float(grid[best])
    extra = np.array([5 * lr_star, 30 * lr_star], np.float32)
    bn_acc_all, bn_steps_all = sweep(True, np.concatenate([grid, extra]))
    bn_acc, bn_steps = bn_acc_all[: len(grid)], bn_steps_all[: len(grid)]

    def largest_ok(steps):
        ok = np.isfinite(steps)
        return float(grid[ok].max()) if ok.any() else float("nan")

    plain_max, bn_max = largest_ok(plain_steps), largest_ok(bn_steps)
    a = float(bn_steps.min()) < float(plain_steps.min())
    b = bool(np.isfinite(plain_max) and np.isfinite(bn_max) and bn_max >= 5 * plain_max)
    c = bool(np.all(np.isfinite(bn_steps_all[len(grid):])))
    reproduced = bool(a and b and c)

    table_rows = [
        ("plain (no BN)", lr_star, plain_steps[best], plain_acc[best].max()),
        ("BN-Baseline (same lr)", lr_star, bn_steps[best], bn_acc[best].max()),
        ("BN-x5", 5 * lr_star, bn_steps_all[len(grid)], bn_acc_all[len(grid)].max()),
        ("BN-x30", 30 * lr_star, bn_steps_all[len(grid) + 1], bn_acc_all[len(grid) + 1].max()),
    ]
    rows = [{"model": m, "learning rate": lr, f"steps to {TARGET:.0%}": s,
             "max test accuracy": acc} for m, lr, s, acc in table_rows]
    grid_rows = [{"learning rate": float(lr), "plain: steps to target": plain_steps[i],
                  "plain: final accuracy": plain_acc[i, -1], "BN: steps to target": bn_steps[i],
                  "BN: final accuracy": bn_acc[i, -1]} for i, lr in enumerate(grid)]

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    cap = epochs * steps_per_epoch * 1.15
    axes[0].semilogx(grid, np.minimum(plain_steps, cap), "o-", color="tab:red",
                     label="plain MLP")
    axes[0].semilogx(grid, np.minimum(bn_steps, cap), "s-", color="tab:green",
                     label="batch-norm MLP")
    axes[0].axhline(cap, color="0.5", ls=":", label="never reached (capped)")
    axes[0].set_xlabel("learning rate")
    axes[0].set_ylabel(f"steps to {TARGET:.0%} test accuracy")
    axes[0].set_title("Steps to target across the lr grid")
    axes[0].legend(fontsize=8)
    ep_steps = np.arange(1, epochs + 1) * steps_per_epoch
    for (label, lr, acc), color in zip(
            [("plain, lr*", lr_star, plain_acc[best]), ("BN-Baseline, lr*", lr_star, bn_acc[best]),
             ("BN-x5", 5 * lr_star, bn_acc_all[len(grid)]),
             ("BN-x30", 30 * lr_star, bn_acc_all[len(grid) + 1])],
            ("tab:red", "tab:olive", "tab:green", "tab:blue")):
        axes[1].plot(ep_steps, acc, "o-", ms=3, color=color, label=f"{label} ({lr:.3g})")
    axes[1].axhline(TARGET, color="0.5", ls=":", label=f"target {TARGET:.0%}")
    axes[1].set_ylim(0.5, 1.0)
    axes[1].set_xlabel("training steps")
    axes[1].set_ylabel("test accuracy (mean of seeds)")
    axes[1].set_title("The lecture's Inception table, in kind")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    measured = {
        "plain best lr": lr_star, "plain: fewest steps": float(plain_steps.min()),
        "BN: fewest steps": float(bn_steps.min()), "plain: largest lr reaching target": plain_max,
        "BN: largest lr reaching target": bn_max,
        "BN-x5 steps": float(bn_steps_all[len(grid)]),
        "BN-x30 steps": float(bn_steps_all[len(grid) + 1]),
    }
    setup = (f"digits ({len(x)} train / {len(test[0])} test), MLP {HIDDEN} ReLU He init, plain "
             f"SGD batch {BATCH} ({steps_per_epoch} steps/epoch), {epochs} epochs, seeds "
             f"{list(seeds)}, lr grid {np.round(grid, 4).tolist()}; inf = target never reached.")
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup),
                                extra_tables={"Whole lr grid": grid_rows})
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
