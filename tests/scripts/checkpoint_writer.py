"""Save checkpoints of a large state in a loop, forever (killed by tests/test_checkpoint.py).

Usage: checkpoint_writer.py DIRECTORY BACKEND. Every leaf of the checkpoint of step N
is filled with N, so the parent can check that whatever survives a SIGKILL is whole.
Continues from the latest checkpoint + 1; prints "saved N" after each save.
"""

import sys

import jax.numpy as jnp

from jaxopt_dl import checkpoint


def state_at(step):
    return {
        "params": {f"w{i}": jnp.full((1024, 1024), step, jnp.float32) for i in range(6)},
        "opt_state": (jnp.full((1024, 512), step, jnp.bfloat16), jnp.asarray(step, jnp.int32)),
    }


def main(directory, backend):
    step = (checkpoint.latest_step(directory) or 0) + 1
    while True:
        checkpoint.save_checkpoint(
            directory, state_at(step), step, backend=backend, keep=2, metadata={"step": step}
        )
        print(f"saved {step}", flush=True)
        step += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
