"""The recipes people write take the fused kernel and give the plain step's numbers.

The plan is read from the optimizer's description: a plain prefix (global-norm clip, L2
term, masks), then Adam/AdamW or heavy-ball momentum and a learning rate, under
``chain``s (jaxopt_dl's or optax's) and ``optax.flatten``. Every recipe is compared with
the jitted plain step (``tx.update`` then ``apply_updates``) over several steps.
"""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import chex
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings

import jaxopt_dl as jdl
from jaxopt_dl.fused import _kernel

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {
    "big": jnp.linspace(-1.0, 1.0, 3000, dtype=jnp.float32),
    "w": jnp.arange(21, dtype=jnp.float32).reshape(3, 7) / 21,
    "b": jnp.full((6,), 2.0, jnp.float32),
}
MASK = {"big": True, "w": False, "b": True}

needs_kernel = pytest.mark.skipif(
    not _kernel.kernel_available(), reason="the fused kernel was not built"
)

RECIPES = {
    "clip_adam": lambda: jdl.chain(jdl.clip_by_global_norm(1.0), jdl.adam(1e-2)),
    "clip_adamw": lambda: jdl.chain(jdl.clip_by_global_norm(1.0), jdl.adamw(1e-2, 0.9)),
    "clip_sgd_momentum": lambda: jdl.chain(
        jdl.clip_by_global_norm(1.0), jdl.sgd(1e-2, momentum=0.9)
    ),
    "l2_adam": lambda: jdl.chain(jdl.add_l2(1e-3), jdl.adam(1e-2)),
    "l2_masked_adam": lambda: jdl.chain(jdl.add_l2(1e-3, mask=MASK), jdl.adam(1e-2)),
    "clip_l2_adam": lambda: jdl.chain(
        jdl.clip_by_global_norm(1.0), jdl.add_l2(1e-3), jdl.adam(1e-2)
    ),
    "l2_clip_sgd_nesterov": lambda: jdl.chain(
        jdl.add_l2(1e-3), jdl.clip_by_global_norm(2.0), jdl.sgd(1e-2, momentum=0.9, nesterov=True)
    ),
    "optax_chain_adam": lambda: optax.chain(jdl.adam(1e-2)),
    "optax_chain_clip_adam": lambda: optax.chain(jdl.clip_by_global_norm(1.0), jdl.adam(1e-2)),
    "momentum_trace": lambda: jdl.momentum(1e-2, 0.9, form="trace"),
    "adamw_mask": lambda: jdl.adamw(1e-2, weight_decay=0.1, mask=MASK),
    "adamw_mask_fn": lambda: jdl.adamw(
        1e-2, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
    ),
    "flatten_adam": lambda: optax.flatten(jdl.adam(1e-2)),
    "flatten_clip_adamw": lambda: optax.flatten(
        jdl.chain(jdl.clip_by_global_norm(1.0), jdl.adamw(1e-2, weight_decay=0.1))
    ),
}
# Recipes whose gradient goes through the prologue: XLA may fuse the clip or the L2 term
# into the moments' computation and reassociate it, so those agree to a few roundings.
EXACT_MOMENTS = {"optax_chain_adam", "momentum_trace", "adamw_mask", "adamw_mask_fn"}
EXACT_MOMENTS |= {"flatten_adam", "clip_sgd_momentum"}


def grads_at(t, params):
    return jax.tree.map(
        lambda x: jax.random.normal(jax.random.PRNGKey(t), x.shape, x.dtype) * (t % 5 + 1),
        params,
    )


def plain_step(tx):
    def step(p, g, s):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    return jax.jit(step)


def fused_step(tx):
    return jax.jit(lambda p, g, s: jdl.fused.apply_gradients(tx, g, s, p), donate_argnums=(0, 2))


def run_both(tx, params=PARAMS, steps=6):
    p1, s1 = params, tx.init(params)
    p2, s2 = jax.tree.map(jnp.copy, params), tx.init(params)
    plain, fused = plain_step(tx), fused_step(tx)
    for t in range(steps):
        g = grads_at(t, params)
        p1, s1 = plain(p1, g, s1)
        p2, s2 = fused(p2, g, s2)
    return (p1, s1), (p2, s2)


def assert_close_step(a, b, exact_moments):
    (p1, s1), (p2, s2) = a, b
    chex.assert_trees_all_equal_structs(s1, s2)
    if exact_moments:
        chex.assert_trees_all_equal(s1, s2)
    else:
        chex.assert_trees_all_close(s1, s2, rtol=1e-5, atol=1e-9)
    chex.assert_trees_all_close(p1, p2, rtol=1e-5, atol=1e-7)


@needs_kernel
@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_takes_the_kernel(name):
    tx = RECIPES[name]()
    state = tx.init(PARAMS)
    assert jdl.fused.fusable(tx, state, PARAMS)
    hlo = fused_step(tx).lower(PARAMS, PARAMS, state).as_text()
    assert "jaxopt_dl_fused_" in hlo


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_matches_plain_step(name):
    assert_close_step(*run_both(RECIPES[name]()), name in EXACT_MOMENTS)


@needs_kernel
def test_flatten_is_one_kernel_call_over_flat_buffers():
    """2,000 leaves through ``optax.flatten``: one call, optax's flat state."""
    params = {f"w{i}": jnp.full((10,), i / 2000, jnp.float32) for i in range(2000)}
    tx = optax.flatten(jdl.adam(1e-2))
    state = tx.init(params)
    hlo = fused_step(tx).lower(params, params, state).as_text()
    assert hlo.count("jaxopt_dl_fused_adam") == 1
    chex.assert_trees_all_equal_structs(state, optax.flatten(optax.adam(1e-2)).init(params))
    assert_close_step(*run_both(tx, params, steps=3), exact_moments=True)


@needs_kernel
def test_plain_step_rounding_depends_on_the_program():
    """Why parameters are compared to a tolerance: the plain step compiled for one leaf
    and for a tree holding that leaf rounds it differently (XLA's simplifier rewrites
    ``(m / c1) / (sqrt(v / c2) + eps)`` in one program and not in the other), while the
    kernel's value does not depend on the other leaves."""
    tx = jdl.adam(1e-2)
    alone = {"big": PARAMS["big"]}
    (p_alone, _), (k_alone, _) = run_both(tx, alone, steps=1)
    (p_tree, _), (k_tree, _) = run_both(tx, PARAMS, steps=1)
    chex.assert_trees_all_equal(k_alone["big"], k_tree["big"])
    assert bool(jnp.any(p_alone["big"] != p_tree["big"]))


NONFINITE = jnp.asarray([jnp.inf, -jnp.inf, jnp.nan, 1.0, -2.0, 0.0], jnp.float32)


@pytest.mark.parametrize(
    "make",
    [
        lambda: jdl.adam(1e-2),
        lambda: jdl.adamw(1e-2, weight_decay=0.1),
        lambda: jdl.sgd(1e-2, momentum=0.9),
        lambda: jdl.chain(jdl.clip_by_global_norm(1.0), jdl.adam(1e-2)),
    ],
    ids=["adam", "adamw", "sgd_momentum", "clip_adam"],
)
def test_nonfinite_params_give_the_plain_values(make):
    """An infinite parameter stays infinite (and NaN stays NaN) as on the plain path."""
    tx = make()
    params = {"w": NONFINITE}
    (p1, s1), (p2, s2) = run_both(tx, params, steps=3)
    chex.assert_trees_all_close(s1, s2, rtol=1e-6)
    np.testing.assert_array_equal(np.isinf(p1["w"]), np.isinf(p2["w"]))
    np.testing.assert_array_equal(np.isnan(p1["w"]), np.isnan(p2["w"]))
    np.testing.assert_allclose(p1["w"], p2["w"], rtol=1e-6)


# Decay values as users pass them: each JAX promotes differently against a bfloat16
# moment (weak types take the moment's dtype, NumPy and strong float32 scalars do not).
DECAY_TYPES = {
    "python": float,
    "np_float32": np.float32,
    "np_float64": np.float64,
    "jnp_weak": lambda v: jnp.asarray(v),
    "jnp_float32": lambda v: jnp.asarray(v, jnp.float32),
}
MOMENT_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}


def _optimizer(kind, cast, b1, b2, dtype, recipe):
    if kind == "adam":
        tx = jdl.adam(1e-2, b1=cast(b1), b2=cast(b2), mu_dtype=dtype, nu_dtype=dtype)
    elif kind == "adamw":
        tx = jdl.adamw(1e-2, b1=cast(b1), b2=cast(b2), mu_dtype=dtype, weight_decay=cast(0.05))
    else:
        tx = jdl.sgd(1e-2, momentum=cast(b1), nesterov=kind == "nesterov", accumulator_dtype=dtype)
    if recipe == "clip":
        tx = jdl.chain(jdl.clip_by_global_norm(cast(1.0)), tx)
    elif recipe == "l2":
        tx = jdl.chain(jdl.add_l2(cast(1e-3)), tx)
    return tx


SMALL = {"a": jnp.linspace(-1.0, 1.0, 1000, dtype=jnp.float32), "b": jnp.ones((3, 5))}


@given(
    decay_type=st.sampled_from(sorted(DECAY_TYPES)),
    moment_dtype=st.sampled_from(sorted(MOMENT_DTYPES)),
    kind=st.sampled_from(["adam", "adamw", "momentum", "nesterov"]),
    recipe=st.sampled_from(["bare", "clip", "l2"]),
    b1=st.sampled_from([0.9, 0.8, 0.95, 0.37]),
    b2=st.sampled_from([0.999, 0.99, 0.9]),
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_decay_types_moment_dtypes_optimizers(decay_type, moment_dtype, kind, recipe, b1, b2):
    """Bitwise moments for every decay type JAX promotes its own way (bare optimizers);
    with a clip or an L2 prefix, to XLA's reassociation of the prefix."""
    tx = _optimizer(kind, DECAY_TYPES[decay_type], b1, b2, MOMENT_DTYPES[moment_dtype], recipe)
    if _kernel.kernel_available():
        assert jdl.fused.fusable(tx, tx.init(SMALL), SMALL)
    assert_close_step(*run_both(tx, SMALL, steps=3), exact_moments=recipe == "bare")


X64_CHILD = """
import jax, jax.numpy as jnp, numpy as np, optax, jaxopt_dl as jdl
jax.config.update("jax_enable_x64", True)
p = {"a": jnp.linspace(-1.0, 1.0, 100, dtype=jnp.float32)}
cases = [(np.float64(0.9), None), (np.float64(0.9), jnp.bfloat16), (0.9, jnp.bfloat16),
         (jnp.asarray(0.9), None), (jnp.asarray(0.9, jnp.float32), jnp.bfloat16),
         (np.float32(0.9), None)]
for b1, dtype in cases:
    tx = jdl.adam(1e-2, b1=b1, mu_dtype=dtype)
    s1 = s2 = tx.init(p); p1 = p2 = p
    for t in range(3):
        g = {"a": jax.random.normal(jax.random.PRNGKey(t), (100,), jnp.float32)}
        u, s1 = jax.jit(tx.update)(g, s1, p1); p1 = optax.apply_updates(p1, u)
        p2, s2 = jax.jit(lambda p, g, s: jdl.fused.apply_gradients(tx, g, s, p))(p2, g, s2)
    same = all(bool(jnp.all(a == b)) and a.dtype == b.dtype
               for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)))
    close = all(np.allclose(a, b, rtol=1e-5) for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)))
    print(same and close, s1[0].mu["a"].dtype)
"""


def test_enable_x64_matches_or_steps_aside():
    """Under ``jax_enable_x64`` a float64 decay makes the plain moments float64: the fused
    step then takes the plain path; every other decay type keeps float32 and the kernel."""
    result = subprocess.run(
        [sys.executable, "-c", X64_CHILD],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.split("\n")[:6]
    assert [line.split()[0] for line in lines] == ["True"] * 6
    assert lines[0].split()[1] == "float64"  # the plain path's own dtype, kept


def test_unloadable_kernel_warns_once_and_steps_plainly(monkeypatch):
    """A library that is present but cannot be loaded: one warning, then the plain path."""

    def refuse(path):
        raise OSError(f"{path}: version `GLIBCXX_9.9' not found")

    monkeypatch.setattr(_kernel.ctypes.cdll, "LoadLibrary", refuse)
    monkeypatch.setattr(_kernel, "library_path", lambda: "/nonexistent/_fused_update.so")
    _kernel._register.cache_clear()
    try:
        tx = jdl.adam(1e-2)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                assert not jdl.fused.kernel_available()
            (p1, s1), (p2, s2) = run_both(tx, SMALL, steps=2)
        assert sum("cannot be loaded" in str(w.message) for w in caught) == 1
        chex.assert_trees_all_equal((p1, s1), (p2, s2))
    finally:
        monkeypatch.undo()
        _kernel._register.cache_clear()
