"""``sweep`` split over two host devices gives the single-device results (new processes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=" + sys.argv[1]
import jax, numpy as np, jaxopt_dl as jdl
(x, y), _ = jdl.data.load_digits()
result = jdl.training.sweep(
    lambda learning_rate: jdl.adam(learning_rate), {"learning_rate": np.logspace(-3, -1, 5)},
    seeds=[0, 1], model=jdl.models.MLP(hidden=(16,)), data=(x[:256], y[:256]),
    epochs=2, batch_size=64)
split = jax.jit(jdl.training.over_host_devices(lambda a, b: a * b))(np.arange(4.0), 2.0)
print(json.dumps({"devices": len(split.sharding.device_set), "loss": result.step_loss.tolist(),
                  "final": result.final_accuracy.tolist()}))
"""


def _sweep(devices):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(devices)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_two_devices_match_one():
    """5 settings x 2 seeds over 2 devices (padded to 6): the curves of one device."""
    one, two = _sweep(1), _sweep(2)
    assert (one["devices"], two["devices"]) == (1, 2)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(two["final"], one["final"], atol=1e-6)
