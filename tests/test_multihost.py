"""Two local processes, jax.distributed on 127.0.0.1, 4 simulated CPU devices each.

Both train the MLP of examples/data_parallel.py data parallel and FSDP over the 8
global devices (cross-process collectives over gloo, JAX's CPU default); the final
params written by process 0 must equal a single-process, single-device run.
"""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxopt_dl as jdl

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS = 10


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def single_process_run():
    sys.path.insert(0, str(ROOT / "examples"))
    import data_parallel as example

    params, _, losses = example.train(
        example.init_params(), jdl.adam(1e-3), example.digits_like(1024), STEPS, 64
    )
    return params, losses


def test_two_processes_match_single_process(tmp_path):
    out = tmp_path / "params.npz"
    port = free_port()
    pythonpath = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=pythonpath)
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "scripts" / "multihost_worker.py"),
                str(port),
                str(i),
                "2",
                str(out),
                str(STEPS),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = []
    try:
        for worker in workers:
            logs.append(worker.communicate(timeout=240)[0])
    except subprocess.TimeoutExpired:
        pytest.fail("multi-process run timed out")
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for i, (worker, log) in enumerate(zip(workers, logs)):
        assert worker.returncode == 0, f"process {i} failed:\n{log[-4000:]}"
        assert f"process {i}: ok, 8 devices" in log

    expected, losses = single_process_run()
    saved = np.load(out)
    for name in ("data_parallel", "fsdp"):
        for path, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]:
            np.testing.assert_allclose(
                saved[f"{name}{jax.tree_util.keystr(path)}"], np.asarray(leaf), rtol=1e-5, atol=1e-6
            )
        np.testing.assert_allclose(saved[f"{name}/losses"], losses, rtol=1e-5)
    assert losses[-1] < losses[0]
