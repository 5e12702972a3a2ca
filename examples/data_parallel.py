"""Data-parallel and FSDP training of a small MLP on 8 (simulated) devices with jdl.adam.

Run (8 simulated CPU devices; on a real multi-GPU host drop the XLA flag):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
        python examples/data_parallel.py --steps 50

Three runs from the same initial params and the same batches:

* single device: no mesh;
* data parallel: params and Adam state replicated, each batch split over the
  ``"data"`` axis of an 8x1 mesh (XLA all-reduces the gradients);
* FSDP: additionally every large param and its Adam moments split over ``"data"``
  (``jaxopt_dl.distributed.fsdp_sharding``; XLA all-gathers them for the forward pass).

The final params of the sharded runs equal the single-device ones to float32
rounding (rtol 1e-5); the script prints the comparison and the shardings.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jaxopt_dl as jdl  # noqa: E402
from jaxopt_dl import distributed  # noqa: E402


class MLP(nn.Module):
    """64 -> 128 -> 64 -> 10, ReLU."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(128)(x))
        x = nn.relu(nn.Dense(64)(x))
        return nn.Dense(10)(x)


def digits_like(num_examples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Digits-like data: 8x8 'images' (64 features), 10 class prototypes plus noise."""
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(0.0, 16.0, size=(10, 64))
    labels = rng.integers(0, 10, size=num_examples)
    images = prototypes[labels] + rng.normal(0.0, 4.0, size=(num_examples, 64))
    images = (images - images.mean(0)) / images.std(0)
    return images.astype(np.float32), labels.astype(np.int32)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, steps: int, seed: int = 0):
    """The same sequence of shuffled minibatches for every run."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        index = rng.choice(len(x), size=batch_size, replace=False)
        yield x[index], y[index]


def make_train_step(model: nn.Module, tx, shardings=None):
    """A jitted step; ``shardings=(params, state, batch)`` pins the sharded layouts."""

    def step(params, state, images, labels):
        def loss_fn(p):
            logits = model.apply({"params": p}, images)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params)
        return jdl.apply_updates(params, updates), state, loss

    if shardings is None:
        return jax.jit(step)
    params_sh, state_sh, batch_sh = shardings
    replicated = distributed.replicated_sharding(batch_sh.mesh)
    return jax.jit(
        step,
        in_shardings=(params_sh, state_sh, batch_sh, batch_sh),
        out_shardings=(params_sh, state_sh, replicated),
    )


def process_rows(batch):
    """This process's contiguous share of a global batch (all of it in one process)."""
    count, index = jax.process_count(), jax.process_index()
    return jax.tree.map(lambda a: a[index * len(a) // count : (index + 1) * len(a) // count], batch)


def init_params(seed: int = 0):
    return MLP().init(jax.random.PRNGKey(seed), jnp.zeros((1, 64), jnp.float32))["params"]


def train(params, tx, data, steps, batch_size, mesh=None, param_shardings=None):
    """Train from ``params``; on ``mesh`` with ``param_shardings`` when given.

    In several processes every process passes the same ``params`` and ``data`` and
    feeds its own rows of each global batch (:func:`process_rows`).
    """
    model = MLP()
    if mesh is None:
        step = make_train_step(model, tx)
        state = tx.init(params)
        put = lambda x, y: (x, y)  # noqa: E731
    else:
        params = distributed.shard_params(params, param_shardings)
        state = distributed.sharded_init(tx, params)
        state_sh = distributed.state_shardings(tx, params)
        step = make_train_step(
            model, tx, (param_shardings, state_sh, distributed.data_parallel_sharding(mesh))
        )
        put = lambda x, y: distributed.shard_batch(process_rows((x, y)), mesh)  # noqa: E731
    losses = []
    for x, y in batches(*data, batch_size=batch_size, steps=steps):
        params, state, loss = step(params, state, *put(x, y))
        losses.append(float(loss))
    return params, state, losses


def trees_close(a, b, rtol=1e-5, atol=1e-6) -> bool:
    a, b = jax.device_get(a), jax.device_get(b)
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b))
    return all(np.allclose(x, y, rtol=rtol, atol=atol) for x, y in pairs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    data = digits_like(1024)
    tx = jdl.adam(args.lr)
    params0 = init_params()
    single, _, losses = train(params0, tx, data, args.steps, args.batch_size)
    print(f"devices: {jax.device_count()}; single-device loss {losses[0]:.4f} -> {losses[-1]:.4f}")

    mesh = distributed.make_mesh(data=jax.device_count())
    replicated = jax.tree.map(lambda _: distributed.replicated_sharding(mesh), params0)
    dp, _, _ = train(params0, tx, data, args.steps, args.batch_size, mesh, replicated)
    print(f"data-parallel == single-device: {trees_close(dp, single)}")

    fsdp_sh = distributed.fsdp_sharding(params0, mesh, min_size=256)
    fsdp, fsdp_state, _ = train(params0, tx, data, args.steps, args.batch_size, mesh, fsdp_sh)
    print(f"fsdp == single-device: {trees_close(fsdp, single)}")
    for path, leaf in jax.tree_util.tree_flatten_with_path(fsdp)[0]:
        print(f"  {jax.tree_util.keystr(path):24s} {str(leaf.shape):10s} {leaf.sharding.spec}")
    mu = fsdp_state[0].mu["Dense_0"]["kernel"]
    print(f"  adam mu of Dense_0/kernel: {mu.sharding.spec}")


if __name__ == "__main__":
    main()
