"""Shared test fixtures: an ill-conditioned, noisy problem and trajectory runners."""

import math

import jax
import jax.numpy as jnp
import optax
import pytest

import jaxopt_dl as jdl

# Scripts that tests start in subprocesses (8 simulated devices, several processes);
# importing them here, e.g. for doctests, would run them on the wrong device count.
collect_ignore = ["scripts"]

CURVATURES = jnp.logspace(-2, 2, 6, dtype=jnp.float32)


def make_params():
    """A small tree: a matrix, a vector and a scalar."""
    return {
        "dense": {
            "kernel": jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(3, 4),
            "bias": jnp.full((4,), 0.5, jnp.float32),
        },
        "scale": jnp.asarray(2.0, jnp.float32),
    }


def noisy_ill_conditioned_grad(params, step):
    """Gradient of sum_i a_i/2 w_i^2 with curvatures a_i in 1e-2..1e2, plus fixed noise."""
    key = jax.random.fold_in(jax.random.PRNGKey(0), step)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    grads = []
    for leaf, k in zip(leaves, keys):
        flat = leaf.reshape(-1)
        curv = jnp.resize(CURVATURES, flat.shape)
        noise = 0.1 * jax.random.normal(k, flat.shape, jnp.float32)
        grads.append((curv * flat + noise).reshape(leaf.shape).astype(leaf.dtype))
    return jax.tree.unflatten(treedef, grads)


_jitted_grad = jax.jit(noisy_ill_conditioned_grad)
_jitted_apply = {}


def run_trajectory(opt, params, steps=100, apply=jdl.apply_updates, grad_fn=None):
    """Run ``steps`` jitted updates and return the final params.

    The update is jitted once per optimizer and the loop runs in Python: compiling a
    whole ``lax.scan`` per optimizer costs several times more than the 100 steps.
    """
    grad_fn = jax.jit(grad_fn) if grad_fn else _jitted_grad
    apply = _jitted_apply.setdefault(apply, jax.jit(apply))
    update = jax.jit(opt.update)
    state = opt.init(params)
    for step in range(steps):
        updates, state = update(grad_fn(params, step), state, params)
        params = apply(params, updates)
    return params


@pytest.fixture
def params():
    return make_params()


def accurate_bias_correction(moment, decay, count):
    """``moment / (1 - decay**count)`` with ``1 - decay**count = -expm1(count log decay)``,
    the logarithm of a Python decay taken in float64."""
    if isinstance(decay, float):
        log_decay = jnp.asarray(-math.inf if decay == 0 else math.log(decay), jnp.float32)
    else:
        log_decay = jnp.log(jnp.asarray(decay, jnp.float32))
    correction = -jnp.expm1(count.astype(jnp.float32) * log_decay)
    return jax.tree.map(lambda t: t / correction.astype(t.dtype), moment)


@pytest.fixture
def accurate_optax(monkeypatch):
    """optax with its bias correction replaced by :func:`accurate_bias_correction`."""
    monkeypatch.setattr(optax.tree, "bias_correction", accurate_bias_correction)
