"""Train the README's accuracy rows on the digits and write the README table from the runs.

    python examples/accuracy_table.py [--rows resnet_demo,mlp,...] [--render-only]

Each row of :data:`ROWS` is a ``python -m jaxopt_dl train`` command, run in this process
through the CLI's ``main`` over the row's seeds. The test accuracies go to ``examples/accuracy_table.json``
(committed) and the table between ``<!-- accuracy:begin -->`` and
``<!-- accuracy:end -->`` in README.md is rendered from that file; ``--render-only``
renders without training. ``tests/test_accuracy_table.py`` fails when the README, the
results file and :data:`ROWS` disagree. The full run takes a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from typing import Any, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "accuracy_table.json")
README = os.path.join(ROOT, "README.md")
BEGIN, END = "<!-- accuracy:begin -->", "<!-- accuracy:end -->"

DEMO = "--dataset digits --model resnet --optimizer adam --lr 3e-3 --schedule warmup_cosine"
MLP = "--dataset digits --model mlp --hidden 256,128 --dropout 0.2 --optimizer adam --lr 3e-3"

# id -> the table's model and recipe cells, the train command's arguments (without
# --seed/--out), the seeds, and the moments' storage dtype (None: the CLI's default).
ROWS: list[dict[str, Any]] = [
    {
        "id": "resnet_demo",
        "model": "ResNet + batch norm (`make demo`)",
        "recipe": "Adam, warmup-cosine peak 3e-3, 12 epochs, batch 64",
        "args": f"{DEMO} --epochs 12 --batch-size 64".split(),
        "seeds": [0],
    },
    {
        "id": "mlp",
        "model": "MLP(256, 128), dropout 0.2",
        "recipe": "Adam, warmup-cosine peak 3e-3, 20 epochs, batch 64",
        "args": f"{MLP} --schedule warmup_cosine --epochs 20 --batch-size 64".split(),
        "seeds": [0, 1, 2, 3, 4],
    },
    {
        "id": "mlp_bf16",
        "model": "same, bf16 Adam moments",
        "recipe": "half the optimizer memory: `--mu-dtype bfloat16 --nu-dtype bfloat16`",
        "args": f"{MLP} --schedule warmup_cosine --epochs 20 --batch-size 64 "
        "--mu-dtype bfloat16 --nu-dtype bfloat16".split(),
        "seeds": [0, 1, 2, 3, 4],
    },
    {
        "id": "mlp_per_pixel",
        "model": "MLP(128, 64), per-pixel standardization",
        "recipe": "Adam 1e-3, 20 epochs, batch 64 (near-blank border pixels blow up on "
        "test images)",
        "args": "--dataset digits --model mlp --hidden 128,64 --optimizer adam --lr 1e-3 "
        "--standardize feature --epochs 20 --batch-size 64".split(),
        "seeds": [0],
    },
]


def spec(row: dict[str, Any]) -> dict[str, Any]:
    """What a row's result depends on: its arguments and seeds.

    Args:
      row: an entry of :data:`ROWS`.
    """
    return {key: row[key] for key in ("args", "seeds")}


def _cli_accuracy(args: list[str], out: str) -> float:
    """The test accuracy of ``python -m jaxopt_dl train ARGS --out OUT``, run in-process."""
    from jaxopt_dl.cli import main

    status = main(["train", *args, "--out", out, "--no-progress"])
    if status != 0:
        raise RuntimeError(f"jaxopt_dl train {' '.join(args)} exited with status {status}")
    with open(os.path.join(out, "metrics.json")) as f:
        return float(json.load(f)["test_accuracy"])


def run_row(row: dict[str, Any]) -> dict[str, Any]:
    """Train ``row`` once per seed; its spec with ``{seed: test accuracy}``.

    Args:
      row: an entry of :data:`ROWS`.
    """
    accuracy = {}
    for seed in row["seeds"]:
        args = [*row["args"], "--seed", str(seed)]
        with tempfile.TemporaryDirectory() as out:
            accuracy[str(seed)] = _cli_accuracy(args, out)
        print(f"{row['id']} seed {seed}: test accuracy {accuracy[str(seed)]:.4f}", flush=True)
    return {"id": row["id"], **spec(row), "test_accuracy": accuracy}


def _environment() -> dict[str, Any]:
    import jax
    import optax

    import jaxopt_dl

    device = jax.devices()[0]
    train, test = jaxopt_dl.data.load_digits(seed=0)
    return {
        "digits": {"train": len(train[0]), "test": len(test[0])},
        "versions": {"jaxopt_dl": jaxopt_dl.__version__, "jax": jax.__version__,
                     "optax": optax.__version__, "python": platform.python_version()},
        "device": device.platform if device.device_kind == device.platform
        else f"{device.platform} ({device.device_kind})",
        "cpu_cores": os.cpu_count(),
    }  # fmt: skip


def load(path: str = RESULTS) -> dict[str, Any]:
    """The results file (``{"environment": ..., "rows": [...]}``).

    Args:
      path: the JSON file to read.
    """
    with open(path) as f:
        return json.load(f)


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def render(results: dict[str, Any]) -> str:
    """The README block: the table of every row of :data:`ROWS` from ``results``.

    A row over one seed shows its accuracy; over several, seed 0's and the range.

    Args:
      results: the loaded results file.
    """
    by_id = {row["id"]: row for row in results["rows"]}
    env = results["environment"]
    digits = env["digits"]
    lines = [
        f"Measured on scikit-learn's digits ({digits['train'] + digits['test']} images, "
        f"{digits['test']} held out for the test accuracy; device {env['device']}, "
        f"{env['cpu_cores']} CPU cores), "
        "generated by `python examples/accuracy_table.py`:",
        "",
        "| model | recipe | test accuracy |",
        "|---|---|---|",
    ]
    for row in ROWS:
        accuracy = by_id[row["id"]]["test_accuracy"]
        seeds = row["seeds"]
        cell = f"{_percent(accuracy[str(seeds[0])])} (seed {seeds[0]})"
        if len(seeds) > 1:
            values = [accuracy[str(seed)] for seed in seeds]
            cell += (
                f"; {_percent(min(values))}-{_percent(max(values))} over seeds "
                f"{seeds[0]}-{seeds[-1]}"
            )
        lines.append(f"| {row['model']} | {row['recipe']} | {cell} |")
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """``text`` with the part between :data:`BEGIN` and :data:`END` set to ``block``.

    Args:
      text: the page (README.md).
      block: the generated text.
    """
    start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
    return f"{text[:start]}\n{block}\n{text[stop:]}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the chosen rows (all by default), update the results file, render the README.

    Args:
      argv: the arguments (default ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(row["id"] for row in ROWS))
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.render_only:
        chosen = args.rows.split(",")
        unknown = sorted(set(chosen) - {row["id"] for row in ROWS})
        if unknown:
            parser.error(f"--rows: unknown {unknown}; valid: {[row['id'] for row in ROWS]}")
        results = load() if os.path.exists(RESULTS) else {"rows": []}
        rows = {row["id"]: row for row in results["rows"]}
        for row in ROWS:
            if row["id"] in chosen:
                rows[row["id"]] = run_row(row)
        results = {
            "environment": _environment(),
            "rows": [rows[row["id"]] for row in ROWS if row["id"] in rows],
        }
        with open(RESULTS, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
    with open(README) as f:
        text = f.read()
    with open(README, "w") as f:
        f.write(replace_block(text, render(load())))
    print(f"wrote {RESULTS} and the table in {README}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
