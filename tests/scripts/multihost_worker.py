"""One process of the 2-process data-parallel run of tests/test_multihost.py.

Usage: multihost_worker.py PORT PROCESS_ID NUM_PROCESSES OUT_FILE STEPS
Each process has 4 simulated CPU devices; together they form an 8x1 ("data", "model")
mesh. Both train examples/data_parallel.py's MLP with jdl.adam, data parallel and
FSDP, each feeding its half of every batch; process 0 writes the final params.
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples"))


def main(port, process_id, num_processes, out_file, steps):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=60,
    )
    import data_parallel as example
    from jax.experimental import multihost_utils

    import jaxopt_dl as jdl
    from jaxopt_dl import distributed

    assert jax.process_count() == num_processes and jax.local_device_count() == 4
    mesh = distributed.make_mesh(data=jax.device_count())
    data = example.digits_like(1024)
    params0 = example.init_params()
    tx = jdl.adam(1e-3)
    results = {}
    replicated = jax.tree.map(lambda _: distributed.replicated_sharding(mesh), params0)
    fsdp = distributed.fsdp_sharding(params0, mesh, min_size=256)
    for name, shardings in (("data_parallel", replicated), ("fsdp", fsdp)):
        params, _, losses = example.train(params0, tx, data, steps, 64, mesh, shardings)
        gathered = multihost_utils.process_allgather(params, tiled=True)
        for path, leaf in jax.tree_util.tree_flatten_with_path(gathered)[0]:
            results[f"{name}{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
        results[f"{name}/losses"] = np.asarray(losses)
    if process_id == 0:
        np.savez(out_file, **results)
    multihost_utils.sync_global_devices("done")
    print(f"process {process_id}: ok, {jax.device_count()} devices", flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
