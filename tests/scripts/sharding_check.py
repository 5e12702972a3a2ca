"""Run in a separate process with 8 simulated CPU devices (see tests/test_sharding.py).

For every optimizer of the table, on a 4x2 ("data", "model") mesh:
1. the state from ``jax.jit(tx.init)`` (explicit mesh axes) and from
   ``distributed.sharded_init`` (automatic axes) puts every param-shaped leaf on its
   param's sharding and replicates every other leaf;
2. three jitted steps on the mesh equal three steps on one device (rtol 1e-5).
Prints one line per optimizer and "ALL OK" at the end; exits non-zero on failure.
"""

import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import chex  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P

import jaxopt_dl as jdl  # noqa: E402
from jaxopt_dl import distributed  # noqa: E402

OPTIMIZERS = {
    "sgd": lambda: jdl.sgd(0.1),
    "sgd_momentum_nesterov": lambda: jdl.sgd(0.1, momentum=0.9, nesterov=True),
    "momentum_velocity": lambda: jdl.momentum(0.1, 0.9, form="velocity"),
    "momentum_velocity_nesterov": lambda: jdl.momentum(0.1, 0.9, nesterov=True),
    "momentum_ema": lambda: jdl.momentum(0.1, 0.9, form="ema"),
    "momentum_ema_nesterov": lambda: jdl.momentum(0.1, 0.9, form="ema", nesterov=True),
    "momentum_trace": lambda: jdl.momentum(0.1, 0.9, form="trace"),
    "adagrad": lambda: jdl.adagrad(0.1),
    "rmsprop": lambda: jdl.rmsprop(0.01),
    "rmsprop_centered_momentum": lambda: jdl.rmsprop(
        0.01, centered=True, momentum=0.9, eps_in_sqrt=False
    ),
    "adadelta": lambda: jdl.adadelta(1.0, weight_decay=1e-2),
    "adam": lambda: jdl.adam(1e-2),
    "adamw": lambda: jdl.adamw(1e-2, weight_decay=1e-2),
    "adamax": lambda: jdl.adamax(1e-2),
    "nadam": lambda: jdl.nadam(1e-2),
    "amsgrad": lambda: jdl.amsgrad(1e-2),
    "lamb": lambda: jdl.lamb(1e-2),
    "lion": lambda: jdl.lion(1e-3),
    "adafactor": lambda: jdl.adafactor(1e-2),
    "noisy_sgd": lambda: jdl.noisy_sgd(0.1, key=0),
    "ema_bias_correction": lambda: jdl.chain(
        jdl.ema(0.9, debias=False), jdl.bias_correction(0.9), jdl.scale(-0.1)
    ),
    "clip_by_global_norm_adamw": lambda: jdl.chain(
        jdl.clip_by_global_norm(1.0),
        jdl.adamw(jdl.warmup_cosine_decay_schedule(0.0, 1e-2, 2, 10), weight_decay=1e-2),
    ),
    "adam_reduce_on_plateau": lambda: jdl.chain(jdl.adam(1e-2), jdl.reduce_on_plateau(patience=1)),
    "apply_if_finite_adam": lambda: jdl.apply_if_finite(jdl.adam(1e-2), 3),
    "multisteps_adam": lambda: jdl.MultiSteps(jdl.adam(1e-2), 2).gradient_transformation(),
}

PARAM_SPECS = {
    "w": ((16, 8), P("data", "model")),
    "v": ((16,), P("data")),
    "b": ((8,), P("model")),
    "r": ((4, 3), P()),
    "s": ((), P()),
}


def make_params():
    key = jax.random.PRNGKey(0)
    out = {}
    for i, (name, (shape, _)) in enumerate(sorted(PARAM_SPECS.items())):
        out[name] = jax.random.normal(jax.random.fold_in(key, i), shape, jnp.float32)
    return out


def loss_fn(params):
    leaves = jax.tree.leaves(params)
    return sum(jnp.sum(jnp.sin(x) + 0.5 * (1.0 + i) * x**2) for i, x in enumerate(leaves))


def make_step(tx):
    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, value=loss)
        return jdl.apply_updates(params, updates), state

    return step


def check_state_sharding(name, state, params):
    """Each param-shaped leaf on its param's sharding, everything else replicated."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    by_suffix = {jax.tree_util.keystr(p): x for p, x in flat}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        where = jax.tree_util.keystr(path)
        owner = [x for suffix, x in by_suffix.items() if where.endswith(suffix)]
        if owner and owner[0].shape == leaf.shape:
            ok = leaf.sharding.is_equivalent_to(owner[0].sharding, leaf.ndim)
            want = owner[0].sharding.spec
        else:
            ok = leaf.sharding.is_fully_replicated
            want = "replicated"
        if not ok:
            raise AssertionError(
                f"{name}: state leaf {where} has sharding {leaf.sharding} but should be {want}"
            )


def run(name, factory, meshes, reference_params):
    tx = jdl.chain(factory())
    step = make_step(tx)
    expected = reference_params
    state = tx.init(expected)
    for _ in range(3):
        expected, state = step(expected, state)
    for mode, mesh in meshes.items():
        shardings = {k: NamedSharding(mesh, spec) for k, (_, spec) in PARAM_SPECS.items()}
        params = distributed.shard_params(reference_params, shardings)
        if mode == "explicit":
            with jax.set_mesh(mesh):
                state = jax.jit(tx.init)(params)
                check_state_sharding(f"{name}/{mode}", state, params)
                for _ in range(3):
                    params, state = step(params, state)
        else:
            state = distributed.sharded_init(tx, params)
            check_state_sharding(f"{name}/{mode}", state, params)
            for _ in range(3):
                params, state = step(params, state)
        for k in params:
            if not params[k].sharding.is_equivalent_to(shardings[k], params[k].ndim):
                raise AssertionError(f"{name}/{mode}: param {k} lost its sharding after steps")
        chex.assert_trees_all_close(
            jax.device_get(params), jax.device_get(expected), rtol=1e-5, atol=1e-6
        )
    print(f"ok {name}", flush=True)


def main(names):
    assert jax.device_count() == 8, jax.devices()
    meshes = {
        "explicit": distributed.make_mesh(data=4, model=2, explicit=True),
        "auto": distributed.make_mesh(data=4, model=2),
    }
    with jax.default_device(jax.devices()[0]):
        reference_params = make_params()
    failures = []
    for name in names or OPTIMIZERS:
        try:
            run(name, OPTIMIZERS[name], meshes, reference_params)
        except Exception as error:  # report every optimizer, then fail
            failures.append(name)
            print(f"FAIL {name}: {type(error).__name__}: {error}", flush=True)
    if failures:
        sys.exit(f"failed: {failures}")
    print("ALL OK")


if __name__ == "__main__":
    main(sys.argv[1:])
