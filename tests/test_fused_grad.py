"""Derivatives through the fused step equal the plain optax step's.

Unrolled optimization: the gradient of the final loss of five Adam steps on a quadratic
with respect to the learning rate, through ``jdl.fused.apply_gradients`` and
``TrainState.apply_gradients``, against the same unrolled loop through ``tx.update``
and ``optax.apply_updates``.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_dl as jdl
from jaxopt_dl.fused import _kernel

A = jnp.diag(jnp.linspace(0.5, 3.0, 64, dtype=jnp.float32))
B = jnp.linspace(-1.0, 1.0, 64, dtype=jnp.float32)
X0 = {"x": jnp.zeros(64, jnp.float32), "y": jnp.full((8, 8), 0.3, jnp.float32)}
STEPS = 5


def loss(params):
    x = params["x"]
    return 0.5 * x @ A @ x - B @ x + 0.5 * jnp.sum(params["y"] ** 2)


def plain_step(tx, g, state, params):
    updates, state = tx.update(g, state, params)
    return optax.apply_updates(params, updates), state


def final_loss(step, make):
    def run(lr):
        tx = make(lr)
        params, state = X0, tx.init(X0)
        for _ in range(STEPS):
            params, state = step(tx, jax.grad(loss)(params), state, params)
        return loss(params)

    return run


MAKERS = {
    "adam": lambda lr: jdl.adam(lr),
    "adamw": lambda lr: jdl.adamw(lr, weight_decay=0.1),
    "clip_adam": lambda lr: jdl.chain(jdl.clip_by_global_norm(1.0), jdl.adam(lr)),
    "sgd_nesterov": lambda lr: jdl.sgd(lr, momentum=0.9, nesterov=True),
    "flatten_adam": lambda lr: optax.flatten(jdl.adam(lr)),
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_learning_rate_meta_gradient(name):
    make = MAKERS[name]
    if _kernel.kernel_available():
        assert jdl.fused.fusable(make(0.1), make(0.1).init(X0), X0)
    lr = jnp.asarray(0.05, jnp.float32)
    want = jax.grad(final_loss(plain_step, make))(lr)
    got = jax.grad(final_loss(jdl.fused.apply_gradients, make))(lr)
    got_jit = jax.jit(jax.grad(final_loss(jdl.fused.apply_gradients, make)))(lr)
    assert np.isfinite(float(want)) and abs(float(want)) > 1e-3
    np.testing.assert_allclose(got, want, rtol=1e-4)
    np.testing.assert_allclose(got_jit, want, rtol=1e-4)


def test_jvp_and_vjp_of_one_step():
    """Forward and reverse mode in params, gradients and the learning rate."""
    g = jax.grad(loss)(X0)

    def plain(lr, params, grads):
        tx = jdl.adam(lr)
        return plain_step(tx, grads, tx.init(X0), params)[0]

    def fused(lr, params, grads):
        tx = jdl.adam(lr)
        return jdl.fused.apply_gradients(tx, grads, tx.init(X0), params)

    def fused_params(lr, params, grads):
        return fused(lr, params, grads)[0]

    primals = (jnp.asarray(0.1), X0, g)
    tangents = (jnp.asarray(1.0), jax.tree.map(jnp.ones_like, X0), jax.tree.map(jnp.ones_like, g))
    want = jax.jvp(plain, primals, tangents)
    got = jax.jvp(fused_params, primals, tangents)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)
    cotangent = jax.tree.map(lambda x: jnp.linspace(-1.0, 1.0, x.size).reshape(x.shape), X0)
    want_vjp = jax.vjp(plain, *primals)[1](cotangent)
    got_vjp = jax.vjp(fused_params, *primals)[1](cotangent)
    chex.assert_trees_all_close(got_vjp, want_vjp, rtol=1e-5, atol=1e-6)


def test_train_state_meta_gradient():
    model = jdl.models.MLP(hidden=(16,))
    x = jax.random.normal(jax.random.PRNGKey(0), (32, 8))
    y = jnp.arange(32) % 10

    def run(lr, apply):
        state = jdl.training.create_train_state(model, jdl.adam(lr), jax.random.PRNGKey(1), x[:1])

        def batch_loss(params):
            logits = model.apply({"params": params}, x, train=False)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        for _ in range(3):
            state = apply(state, jax.grad(batch_loss)(state.params))
        return batch_loss(state.params)

    def fused(state, grads):
        return state.apply_gradients(grads=grads)

    def plain(state, grads):
        params, opt_state = plain_step(state.tx, grads, state.opt_state, state.params)
        return state.replace(params=params, opt_state=opt_state)

    lr = jnp.asarray(0.01)
    want = jax.grad(lambda r: run(r, plain))(lr)
    got = jax.grad(lambda r: run(r, fused))(lr)
    np.testing.assert_allclose(got, want, rtol=1e-4)
