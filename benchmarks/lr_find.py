"""Wall time of the learning-rate range test: one vmapped program vs sequential runs.

The MLP of ``jaxopt_dl.models`` (hidden 128, 64) on the digits with Adam, in one
process, three ways:

* ``vmapped grid`` -- ``jdl.lr_find``: 24 log-spaced rates x 100 steps, every rate an
  independent run from the same init, all in ONE ``jit(vmap(scan))`` program;
* ``sequential grid`` -- the same 24 runs one after another (the same compiled
  single-run program called once per rate);
* ``Lightning ramp`` -- ``jdl.lr_ramp``: PyTorch Lightning's ``lr_find`` (100 steps of
  one run, the rate growing exponentially every step, a Python loop of jitted steps,
  early stop at 4x the best smoothed loss).

Each is timed cold (first call: compilation included) and warm (second call). Not a
test. Writes benchmarks/out/lr_find.{json,md} and prints the table.

    PYTHONPATH=. python benchmarks/lr_find.py
"""

from __future__ import annotations

import json
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_dl as jdl
from jaxopt_dl import lr_finder

NUM, STEPS, RAMP_STEPS, MIN_LR, MAX_LR, BATCH = 24, 100, 100, 1e-5, 1.0, 64


def vmapped(model, data):
    res = jdl.lr_find(
        model, data, jdl.adam, min_lr=MIN_LR, max_lr=MAX_LR, num=NUM, steps=STEPS, batch_size=BATCH
    )
    return res.suggestion, res


def sequential(model, data):
    """The same grid, one rate at a time, through the same compiled single-rate program."""
    x, y = (jnp.asarray(a) for a in data)
    program = lr_finder._compiled_grid(model, jdl.adam)
    indices = jnp.asarray(lr_finder._step_indices(len(x), BATCH, STEPS, seed=0))
    key_data = jax.random.key_data(jax.random.key(0))
    finals = []
    for lr in np.geomspace(MIN_LR, MAX_LR, NUM):
        _, final, _, _ = jax.device_get(
            program(jnp.asarray([lr], jnp.float32), key_data, x, y, x, y, indices)
        )
        finals.append(float(final[0]))
    return lr_finder.suggest_learning_rate(np.geomspace(MIN_LR, MAX_LR, NUM), finals), finals


def ramp(model, data):
    res = jdl.lr_ramp(
        model, data, jdl.adam, min_lr=MIN_LR, max_lr=MAX_LR, num=RAMP_STEPS, batch_size=BATCH
    )
    return res.suggestion, res


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def main():
    (x, y), _ = jdl.data.load_digits(standardize="global")
    data = (x, y)
    rows = []
    for name, fn, runs, steps in (
        ("vmapped grid (jdl.lr_find)", vmapped, NUM, STEPS),
        ("sequential grid (same runs, one by one)", sequential, NUM, STEPS),
        ("Lightning ramp (jdl.lr_ramp)", ramp, 1, RAMP_STEPS),
    ):
        model = jdl.models.MLP()  # a fresh module per method: no shared compilation cache
        cold, (suggestion, detail) = timed(fn, model, data)
        warm, _ = timed(fn, model, data)
        taken = len(detail.losses) if name.startswith("Lightning") else steps
        row = {
            "method": name,
            "runs": runs,
            "steps_per_run": taken,
            "train_steps": runs * taken,
            "cold_s": round(cold, 3),
            "warm_s": round(warm, 3),
            "suggested_lr": suggestion,
        }
        print(row, flush=True)
        rows.append(row)
    result = {
        "model": "MLP(hidden=(128, 64)) on the digits (1437 training examples), Adam",
        "grid": {
            "num": NUM,
            "min_lr": MIN_LR,
            "max_lr": MAX_LR,
            "steps": STEPS,
            "batch_size": BATCH,
        },
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "rows": rows,
    }
    out = pathlib.Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "lr_find.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"Learning-rate range test on {result['model']}; device {result['device']}.",
        "",
        "| method | runs x steps | train steps | cold (s) | warm (s) | suggested lr |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['runs']} x {r['steps_per_run']} | {r['train_steps']} "
            f"| {r['cold_s']:.2f} | {r['warm_s']:.2f} | {r['suggested_lr']:.2g} |"
        )
    (out / "lr_find.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
