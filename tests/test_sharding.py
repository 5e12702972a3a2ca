"""Sharded optimizer state and steps on 8 simulated CPU devices, in a separate process.

The device count of a JAX process is fixed when its backend starts, so the checks
live in scripts run with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``.
"""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_with_8_devices(script, *args, timeout=400):
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_state_sharded_like_params_and_steps_match_single_device():
    result = run_with_8_devices(ROOT / "tests" / "scripts" / "sharding_check.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ALL OK" in result.stdout
    assert result.stdout.count("ok ") >= 25


def test_data_parallel_and_fsdp_example_match_single_device():
    result = run_with_8_devices(ROOT / "examples" / "data_parallel.py", "--steps", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "data-parallel == single-device: True" in result.stdout
    assert "fsdp == single-device: True" in result.stdout


def test_fit_on_a_mesh_data_parallel_and_fsdp_matches_single_device():
    result = run_with_8_devices(ROOT / "tests" / "scripts" / "fit_mesh_check.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ALL OK" in result.stdout
    assert result.stdout.count("ok ") == 3
