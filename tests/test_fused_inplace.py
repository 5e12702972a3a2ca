"""``fit``'s compiled step updates parameters and moments in place, and skips bit-exactly.

The non-finite skip reaches the optimizer step as a flag (``where=``), so the step
keeps no old buffer alive: the compiled, donated ``train_step_fn`` holds no copy of a
parameter- or moment-sized buffer.
"""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_dl as jdl
from jaxopt_dl import training
from jaxopt_dl.fused import _kernel

needs_kernel = pytest.mark.skipif(
    not _kernel.kernel_available(), reason="the fused kernel was not built"
)


def mlp_state(tx):
    state = training.create_train_state(
        jdl.models.MLP(hidden=(256, 256)), tx, jax.random.PRNGKey(0), jnp.zeros((1, 64))
    )
    return jax.tree.map(jnp.copy, state)  # distinct buffers, so the state can be donated


def batch(nan=False):
    x = np.array(jax.random.normal(jax.random.PRNGKey(1), (32, 64)))
    if nan:
        x[3, 5] = np.nan
    return jnp.asarray(x), jnp.arange(32) % 10


def param_sized_copies(hlo: str, params) -> list:
    """The ``copy`` instructions of the compiled HLO whose shape is a parameter's."""
    shapes = {f"f32[{','.join(map(str, p.shape))}]" for p in jax.tree.leaves(params) if p.size > 1}
    copies = re.findall(r"= (f32\[[0-9,]*\])\{[^}]*\} copy\(", hlo)
    return [shape for shape in copies if shape in shapes]


@needs_kernel
@pytest.mark.parametrize(
    "make",
    [
        lambda: jdl.adam(1e-3),
        lambda: jdl.chain(jdl.clip_by_global_norm(1.0), jdl.adamw(1e-3, weight_decay=0.01)),
        lambda: jdl.sgd(1e-2, momentum=0.9),
    ],
    ids=["adam", "clip_adamw", "sgd_momentum"],
)
def test_compiled_train_step_copies_no_parameter_buffer(make):
    state = mlp_state(make())
    step = jax.jit(
        training.train_step_fn,
        donate_argnums=0,
        static_argnames=training.steps.STEP_STATIC,
    )
    hlo = step.lower(state, batch(), max_consecutive_nonfinite=3).compile().as_text()
    assert "jaxopt_dl_fused_" in hlo
    assert param_sized_copies(hlo, state.params) == []


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "plain"])
def test_skip_flag_keeps_everything_bit_for_bit(fused, monkeypatch):
    """A NaN batch: params, moments and counters come back bitwise, in place."""
    if not fused:
        monkeypatch.setattr(jdl.fused.step._kernel, "kernel_available", lambda: False)
    state = mlp_state(jdl.adam(1e-3))
    want = jax.tree.map(np.asarray, (state.params, state.opt_state, state.step))
    step = jax.jit(
        training.train_step_fn, donate_argnums=0, static_argnames=training.steps.STEP_STATIC
    )
    new, metrics = step(state, batch(nan=True))
    assert not bool(metrics["finite"])
    chex.assert_trees_all_equal((new.params, new.opt_state, new.step), want)
    assert int(new.nonfinite_streak) == 1
    new, metrics = step(new, batch())
    assert bool(metrics["finite"]) and int(new.step) == 1


def test_apply_gradients_where_false_is_the_identity():
    tx = jdl.chain(jdl.clip_by_global_norm(1.0), jdl.adam(1e-2))
    params = {"w": jnp.linspace(-1.0, 1.0, 1000), "b": jnp.ones(3)}
    state = tx.init(params)
    grads = jax.tree.map(lambda x: x * 3.0, params)
    skipped = jax.jit(lambda g, s, p: jdl.fused.apply_gradients(tx, g, s, p, where=False))(
        grads, state, params
    )
    chex.assert_trees_all_equal(skipped, (params, state))
    stepped = jax.jit(lambda g, s, p: jdl.fused.apply_gradients(tx, g, s, p, where=True))(
        grads, state, params
    )
    chex.assert_trees_all_equal(stepped, jdl.fused.apply_gradients(tx, grads, state, params))
