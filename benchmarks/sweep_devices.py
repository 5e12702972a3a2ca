"""``sweep`` of 16 learning rates on 1 and 2 host devices vs 16 sequential ``fit`` runs.

16 sequential runs are timed as 16 x one warm ``fit`` run (no recompilation).

Each configuration runs in its own process (the device count is fixed when jax
starts: ``XLA_FLAGS=--xla_force_host_platform_device_count=N``), one after the other
in the same invocation; rounds are medians, compile time excluded. Each timing also
records the cores the process kept busy (CPU time / wall time): when one device already
keeps every core busy, two devices cannot be faster by more than cores / cores used.
Prints JSON;
``benchmarks/training.py`` records it.

    python benchmarks/sweep_devices.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = 16
CONFIGS = [((128, 64), 64), ((512, 512), 256)]  # (MLP hidden, batch size)


def child(epochs: int, rounds: int) -> dict:
    """In this process: one sweep per config and, on one device, 16 sequential runs."""
    import jax
    import numpy as np

    sys.path.insert(0, str(ROOT))
    import jaxopt_dl as jdl
    from jaxopt_dl import training

    def make_tx(learning_rate):  # one function: the compiled sweep is reused
        return jdl.adam(learning_rate)

    (x, y), test = jdl.data.load_digits(standardize="global")
    lrs = np.logspace(-4, -1, SETTINGS)
    out = {"devices": jax.device_count(), "load_avg_at_start": os.getloadavg()[0], "configs": []}
    for hidden, batch in CONFIGS:
        model = jdl.models.MLP(hidden=hidden)

        def swept():
            return training.sweep(
                make_tx,
                {"learning_rate": lrs},
                [0],
                model,
                (x, y),
                epochs=epochs,
                batch_size=batch,
                val_data=test,
                eval_every_epoch=False,
            )

        state0 = training.create_train_state(model, jdl.adam(1e-3), jax.random.key(0), x[:1])

        def one_run():  # a warm fit run: 16 sequential runs cost 16 of these
            state, _ = training.fit(state0, (x, y), epochs=epochs, batch_size=batch, progress=False)
            jax.block_until_ready(state.params)

        swept()
        runs = {"sweep": swept}
        if jax.device_count() == 1:
            one_run()
            runs["one_run"] = one_run
        times = {k: [] for k in runs}
        busy = {k: [] for k in runs}  # cores in use: process CPU time / wall time
        for _ in range(rounds):
            for name, fn in runs.items():
                start, cpu = time.perf_counter(), time.process_time()
                fn()
                times[name].append(time.perf_counter() - start)
                busy[name].append((time.process_time() - cpu) / times[name][-1])
        row = {f"{k}_s": statistics.median(v) for k, v in times.items()}
        row.update({f"{k}_cores_used": statistics.median(v) for k, v in busy.items()})
        if "one_run_s" in row:
            row["sixteen_sequential_s"] = SETTINGS * row["one_run_s"]
        out["configs"].append(
            {"hidden": list(hidden), "batch_size": batch, "epochs": epochs, **row}
        )
    out["load_avg_at_end"] = os.getloadavg()[0]
    return out


def measure(quick: bool) -> dict:
    """Both device counts, each in a fresh process; the ratios the issue asks for."""
    results = {}
    for devices in (1, 2):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        proc = subprocess.run(
            [sys.executable, __file__, "--child", *(["--quick"] * quick)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        results[devices] = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = []
    for one, two in zip(results[1]["configs"], results[2]["configs"]):
        two_s = two["sweep_s"]
        rows.append(
            {
                **one,
                "sweep_2_devices_s": two_s,
                "sweep_2_devices_cores_used": two["sweep_cores_used"],
                "speedup_2_devices_vs_1": one["sweep_s"] / two_s,
                "speedup_2_devices_vs_sequential": one["sixteen_sequential_s"] / two_s,
            }
        )
    return {
        "settings": SETTINGS,
        "rows": rows,
        "load_avg": [results[1]["load_avg_at_start"], results[2]["load_avg_at_end"]],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, 2 rounds")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    epochs, rounds = (2, 2) if args.quick else (5, 3)
    result = child(epochs, rounds) if args.child else measure(args.quick)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
