"""One ``training.fit`` run in its own process (run by tests/test_checkpoint_processes.py).

Usage (from the repository root): fit_checkpoint.py EPOCHS OUT [CHECKPOINT_DIR]

Trains a small MLP (batch norm, dropout, clipping, AdamW with a warmup-cosine schedule)
on 256 digits for EPOCHS epochs, resuming from CHECKPOINT_DIR when it holds a
checkpoint, and writes the final TrainState's leaves (typed keys as key data) to
OUT.npz and the history, without its wall-clock times, to OUT.json.
"""

import json
import sys

import jax
import numpy as np

import jaxopt_dl as jdl
from jaxopt_dl import checkpoint, training


def main(epochs, out, checkpoint_dir=None):
    (x, y), (x_test, y_test) = jdl.data.load_digits()
    model = jdl.models.MLP(hidden=(16,), use_batchnorm=True, dropout_rate=0.1)
    tx = jdl.chain(
        jdl.clip_by_global_norm(1.0),
        jdl.adamw(jdl.warmup_cosine_decay_schedule(0.0, 1e-2, 8, 32), weight_decay=1e-2),
    )
    state = training.create_train_state(model, tx, jax.random.key(0), x[:1])
    state, history = training.fit(
        state,
        (x[:256], y[:256]),
        (x_test[:64], y_test[:64]),
        epochs=epochs,
        batch_size=64,
        progress=False,
        checkpoint_dir=checkpoint_dir,
    )
    leaves = [
        jax.random.key_data(v) if checkpoint._is_key(v) else v for v in jax.tree.leaves(state)
    ]
    np.savez(f"{out}.npz", **{f"leaf_{i}": np.asarray(v) for i, v in enumerate(leaves)})
    record = history.to_dict()
    record.pop("epoch_time")
    with open(f"{out}.json", "w") as f:
        json.dump(record, f)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], *sys.argv[3:])
