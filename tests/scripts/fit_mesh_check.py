"""Run with 8 simulated CPU devices (see tests/test_sharding.py): ``fit`` on a mesh.

Trains the same model (batch norm, dropout, Adam with a schedule and clipping) with
``fit`` on one device, data-parallel on a 4x2 mesh, and FSDP on 4x2 and 8x1 meshes;
the final states agree to rtol 1e-5, and under FSDP the params and Adam moments are
sharded over "data" after training. Prints one line per run and "ALL OK".
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import chex  # noqa: E402
import jax  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jaxopt_dl as jdl  # noqa: E402
from jaxopt_dl import distributed, training  # noqa: E402

assert jax.device_count() == 8, jax.devices()
(X, Y), (X_TEST, Y_TEST) = jdl.data.load_digits()
DATA = (X[:512], Y[:512])
# Adam divides by sqrt(nu): in directions where the exact gradient is zero (batch norm
# makes the loss invariant to shifting a pre-activation, so the gradient along it is
# rounding noise) it turns different summation orders into O(1) differences; Adam is
# therefore checked without batch norm, batch norm with SGD + momentum.
CONFIGS = {
    "adam+clip+schedule, dropout": (
        jdl.models.MLP(hidden=(64, 32), dropout_rate=0.1),
        jdl.chain(
            jdl.clip_by_global_norm(1.0),
            jdl.adam(jdl.warmup_cosine_decay_schedule(0.0, 3e-3, 4, 32)),
        ),
        [((4, 2), False), ((8, 1), True)],
    ),
    "sgd+momentum, batch norm, dropout": (
        jdl.models.MLP(hidden=(64, 32), use_batchnorm=True, dropout_rate=0.1),
        jdl.sgd(0.05, momentum=0.9),
        [((4, 2), True)],
    ),
}


def train(model, tx, mesh=None, fsdp=False):
    state = training.create_train_state(model, tx, jax.random.key(0), X[:1])
    return training.fit(
        state,
        DATA,
        (X_TEST, Y_TEST),
        epochs=2,
        batch_size=32,
        progress=False,
        config=training.FitConfig(mesh=mesh, fsdp=fsdp),
    )


def moment(opt_state):
    """The first param-shaped leaf tree of the optimizer state (Adam's mu, the trace)."""
    for node in jax.tree.leaves(opt_state, is_leaf=lambda n: isinstance(n, dict)):
        if isinstance(node, dict):
            return node
    raise AssertionError("no param-shaped optimizer state")


def close(a, b):
    chex.assert_trees_all_close(jax.device_get(a), jax.device_get(b), rtol=1e-5, atol=1e-6)


for name, (model, tx, meshes) in CONFIGS.items():
    reference, ref_history = train(model, tx)
    for (data, width), fsdp in meshes:
        mesh = distributed.make_mesh(data, width)
        state, history = train(model, tx, mesh, fsdp)
        close(state.params, reference.params)
        close(state.opt_state, reference.opt_state)
        close(state.batch_stats, reference.batch_stats)
        chex.assert_trees_all_close(history.val_loss, ref_history.val_loss, rtol=1e-5)
        assert int(state.step) == int(reference.step)
        kernel = state.params["dense_0"]["kernel"]  # (64, 64): sharded under FSDP
        mu = moment(state.opt_state)["dense_0"]["kernel"]
        expected = P("data") if fsdp else P()
        assert kernel.sharding.spec == expected, kernel.sharding
        assert mu.sharding.spec == expected, mu.sharding
        assert kernel.sharding.mesh.shape == mesh.shape
        print(
            f"ok {name}: mesh {data}x{width} fsdp={fsdp} equals one device "
            f"(kernel {kernel.sharding.spec})"
        )
print("ALL OK")
