"""One ``training.fit`` run in bfloat16 with stochastic rounding, in its own process.

Run by tests/test_precision.py. Usage (from the repository root):
precision_resume.py EPOCHS OUT [CHECKPOINT_DIR]

Trains a small MLP whose parameters are bfloat16 (no float32 copy), updated with
stochastic rounding, with Adam whose moments are bfloat16 and stochastically rounded, on
256 digits for EPOCHS epochs, resuming from CHECKPOINT_DIR when it holds a checkpoint;
writes the final params and optimizer state (bit patterns) to OUT.npz.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_dl as jdl
from jaxopt_dl import training


def build():
    (x, y), _ = jdl.data.load_digits()
    model = jdl.models.MLP(hidden=(16,))
    tx = jdl.adam(
        1e-2, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16, rounding="stochastic", rounding_seed=7
    )
    params = model.init(jax.random.key(0), x[:1], train=False)["params"]
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    state = training.create_train_state(
        model, tx, jax.random.key(0), x[:1], params=params, rounding="stochastic", rounding_seed=3
    )
    return state, (x[:256], y[:256])


def bits(state):
    """Every params and opt_state leaf as raw bits (bfloat16 viewed as uint16)."""
    leaves = jax.tree.leaves((state.params, state.opt_state, state.step))
    out = {}
    for i, v in enumerate(leaves):
        v = np.asarray(v)
        out[f"leaf_{i}"] = v.view(np.uint16) if v.dtype == jnp.bfloat16 else v
    return out


def main(epochs, out, checkpoint_dir=None):
    state, data = build()
    state, _ = training.fit(
        state, data, epochs=epochs, batch_size=64, progress=False, checkpoint_dir=checkpoint_dir
    )
    np.savez(f"{out}.npz", **bits(state))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], *sys.argv[3:])
