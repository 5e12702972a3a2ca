"""Optimizer states through a checkpoint across processes (tests/test_checkpoint_processes.py).

Usage (from the repository root):
  optimizer_checkpoint.py save DIR     -- every case: build, step 3 times, save with
                                          both backends; write the saved and the
                                          one-step-continued leaves to DIR/<case>/saved.npz
  optimizer_checkpoint.py restore DIR  -- every case: build afresh, restore into a new
                                          template with both backends; write the restored
                                          and continued leaves to DIR/<case>/<backend>.npz

Each .npz holds ``state_<i>`` (params and optimizer state after 3 steps) and
``next_<i>`` (after one more step), leaf by leaf, typed keys as their key data.
"""

import inspect
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_dl as jdl
from jaxopt_dl import checkpoint, contrib, optimizers

STEPS = 3
TAKE_VALUE = ("reduce_on_plateau",)  # the cases whose update takes the loss (value=)
# the cases stepped through the fused CPU step (jdl.fused.apply_gradients), as TrainState does
FUSED_STEP = ("fused_step_adam", "fused_step_sgd_momentum")


def optimizer_factories():
    """Every public optimizer factory of the library, contrib included (first argument ``learning_rate``)."""
    return {
        name: factory
        for module in (optimizers, contrib)
        for name, factory in vars(module).items()
        if not name.startswith("_")
        and callable(factory)
        and not inspect.isclass(factory)
        and next(iter(inspect.signature(factory).parameters), None) == "learning_rate"
    }


def cases():
    """Case name -> a function building the optimizer afresh."""
    built = {name: (lambda f=factory: f(1e-2)) for name, factory in optimizer_factories().items()}
    schedule = jdl.warmup_cosine_decay_schedule(0.0, 1e-2, warmup_steps=2, decay_steps=10)
    built.update(
        {
            "chain_with_schedule": lambda: jdl.chain(
                jdl.clip_by_global_norm(1.0), jdl.adamw(schedule, weight_decay=1e-2)
            ),
            "reduce_on_plateau": lambda: jdl.chain(
                jdl.adam(1e-2), jdl.reduce_on_plateau(factor=0.5, patience=0, rtol=0.5)
            ),
            "multi_steps": lambda: jdl.MultiSteps(jdl.adam(1e-2), every_k_schedule=2),
            "inject_hyperparams": lambda: jdl.inject_hyperparams(jdl.adam)(learning_rate=schedule),
            "multi_transform": lambda: jdl.multi_transform(
                {"adam": jdl.adam(1e-2), "sgd": jdl.sgd(0.1, momentum=0.9)},
                {"w": "adam", "b": "sgd"},
            ),
            "fused_step_adam": lambda: jdl.adam(1e-2),
            "fused_step_sgd_momentum": lambda: jdl.sgd(1e-2, momentum=0.9),
        }
    )
    return built


def initial_params():
    return {
        "w": jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(3, 4),
        "b": jnp.asarray([0.5, -0.25, 0.125], jnp.float32),
    }


def loss(params):
    return jnp.sum(jnp.sin(3.0 * params["w"])) + jnp.sum(params["b"] ** 2) + 2.0


def step(tx, params, opt_state, takes_value, fused=False):
    value, grads = jax.value_and_grad(loss)(params)
    extra = {"value": value} if takes_value else {}
    if fused:
        return jdl.fused.apply_gradients(tx, grads, opt_state, params, **extra)
    updates, opt_state = tx.update(grads, opt_state, params, **extra)
    return optax.apply_updates(params, updates), opt_state


def flat(tree):
    leaves = jax.tree.leaves(tree)
    return [np.asarray(jax.random.key_data(x) if checkpoint._is_key(x) else x) for x in leaves]


def write(path, state, continued):
    arrays = {f"state_{i}": x for i, x in enumerate(flat(state))}
    arrays.update({f"next_{i}": x for i, x in enumerate(flat(continued))})
    np.savez(path, **arrays)


def save(directory):
    for name, build in cases().items():
        tx, takes_value, fused = build(), name in TAKE_VALUE, name in FUSED_STEP
        params = initial_params()
        opt_state = tx.init(params)
        for _ in range(STEPS):
            params, opt_state = step(tx, params, opt_state, takes_value, fused)
        state = {"params": params, "opt_state": opt_state}
        folder = os.path.join(directory, name)
        for backend in checkpoint.BACKENDS:
            checkpoint.save_checkpoint(os.path.join(folder, backend), state, STEPS, backend=backend)
        write(
            os.path.join(folder, "saved.npz"),
            state,
            step(tx, params, opt_state, takes_value, fused),
        )


def restore(directory):
    for name, build in cases().items():
        tx, takes_value, fused = build(), name in TAKE_VALUE, name in FUSED_STEP
        fresh = jax.tree.map(jnp.zeros_like, initial_params())
        template = {"params": fresh, "opt_state": tx.init(fresh)}
        for backend in checkpoint.BACKENDS:
            folder = os.path.join(directory, name)
            state = checkpoint.restore_checkpoint(os.path.join(folder, backend), template)
            assert jax.tree.structure(state) == jax.tree.structure(template), name
            continued = step(tx, state["params"], state["opt_state"], takes_value, fused)
            write(os.path.join(folder, f"{backend}.npz"), state, continued)


if __name__ == "__main__":
    {"save": save, "restore": restore}[sys.argv[1]](sys.argv[2])
