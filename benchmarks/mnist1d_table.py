"""Greydanus' MNIST-1D table with jaxopt_dl: logistic regression, MLP, CNN and GRU.

Run: ``python -m benchmarks.mnist1d_table [--quick]`` from the repository root. Writes
``benchmarks/results/mnist1d_table[.quick].json`` and the "MNIST-1D" section of
``docs/benchmarks.md`` (the full run; ``--quick`` writes only its own JSON and Markdown
under ``benchmarks/results/``, marked quick).

The setup follows the paper's training script as far as the library allows: the data of
the ``mnist1d`` package's default arguments (4,000 train / 1,000 test), Adam with learning
rate 1e-2, batches of 100, 6,000 steps (150 epochs), no weight decay, accuracy on the test
set after the last step. Each model trains on every seed in ONE vmapped
``jaxopt_dl.training.sweep``. Differences from the paper: the inputs are standardized with
one TRAIN mean and standard deviation (the package standardizes over all 5,000
sequences); batches are reshuffled every epoch (the paper walks the training set in a
fixed order); the MLP's second layer has no residual connection; initializations are
jaxopt_dl's (He normal for ReLU layers, Glorot uniform and orthogonal for the GRU), not
torch's defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jaxopt_dl as jdl  # noqa: E402
from benchmarks.reporting import (  # noqa: E402
    RESULTS,
    ROOT,
    bootstrap_interval,
    environment,
    replace_section,
)

PAPER = {"logistic": 32.0, "mlp": 68.0, "cnn": 94.0, "gru": 91.0}
"""Test accuracy (%) of the four models in Greydanus 2020, "Scaling down deep learning"."""

NAMES = {
    "logistic": "Logistic regression",
    "mlp": "MLP (100, 100)",
    "cnn": "CNN1D (3 x 25 channels)",
    "gru": "GRU (bidirectional, 6 units)",
}
LR, BATCH = 1e-2, 100


def models() -> dict:
    """The four models of the table, by key."""
    return {
        "logistic": jdl.models.MLP(hidden=()),
        "mlp": jdl.models.MLP(hidden=(100, 100)),
        "cnn": jdl.models.CNN1D(),
        "gru": jdl.models.GRU(),
    }


def run(quick: bool) -> dict:
    """Train every model on every seed; return the record written to JSON.

    Args:
      quick: 3 seeds and 1,000 steps instead of 10 seeds and 6,000 steps.

    Returns:
      The record.
    """
    seeds = list(range(3 if quick else 10))
    steps = 1000 if quick else 6000
    (x, y), test = jdl.data.load_mnist1d(standardize="global")
    epochs = steps // (len(x) // BATCH)
    rows = {}
    for key, model in models().items():
        start = time.perf_counter()
        result = jdl.training.sweep(
            lambda learning_rate: jdl.adam(learning_rate),
            {"learning_rate": np.array([LR])},
            seeds,
            model,
            (x, y),
            epochs=epochs,
            batch_size=BATCH,
            val_data=test,
            eval_every_epoch=False,
        )
        seconds = time.perf_counter() - start
        accuracy = 100.0 * result.final_accuracy[0]
        low, high = bootstrap_interval(accuracy)
        rows[key] = {
            "model": NAMES[key],
            "paper_accuracy": PAPER[key],
            "test_accuracy": accuracy.tolist(),
            "mean": float(accuracy.mean()),
            "interval": [low, high],
            "min": float(accuracy.min()),
            "max": float(accuracy.max()),
            "final_train_accuracy": (100.0 * result.train_accuracy[0, :, -1]).tolist(),
            "sweep_seconds": seconds,
        }
        print(
            f"{NAMES[key]:32s} test {accuracy.mean():5.1f}% [{low:.1f}, {high:.1f}] "
            f"(paper {PAPER[key]:.0f}%) in {seconds:.0f}s",
            flush=True,
        )
    return {
        "mode": "quick" if quick else "full",
        "setup": {
            "optimizer": "jaxopt_dl.adam",
            "learning_rate": LR,
            "batch_size": BATCH,
            "steps": epochs * (len(x) // BATCH),
            "epochs": epochs,
            "seeds": seeds,
            "standardize": "global",
            "train_examples": len(x),
            "test_examples": len(test[0]),
            "interval": "95% percentile bootstrap of the mean over seeds",
        },
        "environment": environment(),
        "rows": rows,
    }


def markdown(record: dict) -> str:
    """The table of a record, beside the paper's numbers.

    Args:
      record: from :func:`run`.

    Returns:
      Markdown.
    """
    setup = record["setup"]
    mode = record["mode"]
    lines = [
        f"Mode: **{mode}**"
        + (" (few seeds and steps: not the binding result)" if mode == "quick" else "")
        + f". Adam (learning rate {setup['learning_rate']:g}), batches of "
        f"{setup['batch_size']}, {setup['steps']:,} steps, {len(setup['seeds'])} seeds (each "
        "seed: initialization and shuffles); test accuracy after the last step on the "
        f"{setup['test_examples']:,} test sequences, mean over seeds with a "
        f"{setup['interval']}.",
        "",
        "| Model | Paper | jaxopt_dl (mean) | 95% interval | Min–max over seeds | Train accuracy |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in record["rows"].values():
        train = np.mean(row["final_train_accuracy"])
        lines.append(
            f"| {row['model']} | {row['paper_accuracy']:.0f}% | {row['mean']:.1f}% | "
            f"{row['interval'][0]:.1f}–{row['interval'][1]:.1f}% | "
            f"{row['min']:.1f}–{row['max']:.1f}% | {train:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, 1,000 steps")
    args = parser.parse_args(argv)
    record = run(args.quick)
    suffix = ".quick" if args.quick else ""
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"mnist1d_table{suffix}.json"), "w") as f:
        json.dump(record, f, indent=1)
    table = markdown(record)
    with open(os.path.join(RESULTS, f"mnist1d_table{suffix}.md"), "w") as f:
        f.write(table)
    if not args.quick:
        replace_section(os.path.join(ROOT, "docs", "benchmarks.md"), "mnist1d_table", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
