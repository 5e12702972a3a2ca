"""The fused step against the plain optax step.

The moments of Adam, AdamW and heavy-ball momentum are the plain step's bit for bit;
the parameters agree to the rounding XLA's simplifier chooses for the plain step's
divisions, which depends on the program it is compiled in (see
``test_plain_step_rounding_depends_on_the_program``).
"""

import os
import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

import jaxopt_dl as jdl
from jaxopt_dl.fused import _kernel

ROOT = Path(__file__).resolve().parents[1]
STEPS = 20
PARAMS = {
    "big": jnp.linspace(-1.0, 1.0, 3000, dtype=jnp.float32),
    "w": jnp.arange(21, dtype=jnp.float32).reshape(3, 7) / 21,
    "nested": [jnp.zeros((2, 2), jnp.float32), jnp.full((6,), 2.0, jnp.float32)],
    "scalar": jnp.asarray(0.5, jnp.float32),
}

needs_kernel = pytest.mark.skipif(
    not _kernel.kernel_available(), reason="the fused kernel was not built"
)


def grads_at(t, params):
    return jax.tree.map(
        lambda x: (jax.random.normal(jax.random.PRNGKey(t), x.shape) * (t % 7 + 1)).astype(x.dtype),
        params,
    )


SCHEDULE = optax.cosine_decay_schedule(1e-2, STEPS)
CASES = {
    "adam": lambda: jdl.adam(1e-2),
    "adam_b1_eps_root": lambda: jdl.adam(3e-3, b1=0.8, eps_root=1e-6),
    "adam_schedule": lambda: jdl.adam(SCHEDULE),
    "adam_no_bias_correction": lambda: jdl.adam(1e-3, bias_correction=False),
    "adam_bf16_mu": lambda: jdl.adam(1e-3, mu_dtype=jnp.bfloat16),
    "adam_bf16_mu_nu": lambda: jdl.adam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
    "adamw": lambda: jdl.adamw(1e-2, weight_decay=0.1),
    "adamw_schedule": lambda: jdl.adamw(SCHEDULE, weight_decay=0.01),
    "sgd_momentum": lambda: jdl.sgd(1e-2, momentum=0.9),
    "sgd_nesterov_schedule": lambda: jdl.sgd(SCHEDULE, momentum=0.8, nesterov=True),
    "sgd_bf16_trace": lambda: jdl.sgd(1e-2, momentum=0.9, accumulator_dtype=jnp.bfloat16),
    "optax_adam_in_optax_chain": lambda: optax.chain(jdl.adam(1e-2)),
}


def plain_step(tx):
    def step(p, g, s):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    return jax.jit(step)


def fused_step(tx):
    return jax.jit(lambda p, g, s: jdl.fused.apply_gradients(tx, g, s, p), donate_argnums=(0, 2))


def run_both(tx, params=PARAMS, steps=STEPS):
    p1, s1 = params, tx.init(params)
    p2, s2 = jax.tree.map(jnp.copy, params), tx.init(params)
    plain, fused = plain_step(tx), fused_step(tx)
    for t in range(steps):
        g = grads_at(t, params)
        p1, s1 = plain(p1, g, s1)
        p2, s2 = fused(p2, g, s2)
    return (p1, s1), (p2, s2)


def assert_same_step(a, b):
    (p1, s1), (p2, s2) = a, b
    # The state: optax's structure, moments and counters bit for bit.
    chex.assert_trees_all_equal_structs(s1, s2)
    chex.assert_trees_all_equal(s1, s2)
    # Parameters: the kernel applies p + (-lr) * d as one fused multiply-add.
    chex.assert_trees_all_close(p1, p2, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("name", list(CASES))
def test_matches_plain_step(name):
    assert_same_step(*run_both(CASES[name]()))


@needs_kernel
@pytest.mark.parametrize("name", list(CASES))
def test_kernel_runs_the_step(name):
    tx = CASES[name]()
    hlo = fused_step(tx).lower(PARAMS, PARAMS, tx.init(PARAMS)).as_text()
    assert "jaxopt_dl_fused_" in hlo
    assert jdl.fused.fusable(tx, tx.init(PARAMS), PARAMS)


@pytest.mark.parametrize(
    "tx",
    [
        optax.adam(1e-2),  # optax's own blocks: nothing describes them
        jdl.rmsprop(1e-2),  # no kernel
        jdl.sgd(1e-2),  # no momentum
        jdl.adam(1e-2, nesterov=True),
        jdl.chain(optax.clip(1.0), jdl.adam(1e-2)),  # an undescribed prefix
        jdl.chain(jdl.adam(1e-2), jdl.clip_by_global_norm(1.0)),  # a block after the rate
        jdl.chain(jdl.add_l2(optax.linear_schedule(1e-3, 0.0, 10)), jdl.adam(1e-2)),
    ],
    ids=["optax", "rmsprop", "sgd_no_momentum", "nadam", "opaque_prefix", "suffix", "l2_schedule"],
)
def test_other_optimizers_take_the_plain_path(tx):
    """Without a kernel rule, or a state of another structure, it is exactly update + apply."""
    assert not jdl.fused.fusable(tx, tx.init(PARAMS), PARAMS)
    (p1, s1), (p2, s2) = run_both(tx, steps=3)
    chex.assert_trees_all_equal((p1, s1), (p2, s2))


def test_mixed_dtypes_take_the_plain_path():
    params = {**PARAMS, "b16": jnp.ones((5,), jnp.bfloat16)}
    tx = CASES["adam"]()
    assert not jdl.fused.fusable(tx, tx.init(params), params)
    (p1, s1), (p2, s2) = run_both(tx, params, steps=3)
    chex.assert_trees_all_equal((p1, s1), (p2, s2))


@needs_kernel
def test_threaded_leaf_matches():
    """A leaf large enough for the thread pool (more than 2**19 elements)."""
    params = {"w": jnp.linspace(-1.0, 1.0, 2**20 + 77, dtype=jnp.float32), "b": jnp.ones(3)}
    assert_same_step(*run_both(CASES["adamw"](), params, steps=3))


def test_vmap_over_learning_rate():
    """As in ``sweep``: the hyperparameter is traced and the step vmapped over it."""
    rates = jnp.array([1e-3, 1e-2, 1e-1])
    p = {"w": jnp.linspace(-1.0, 1.0, 64), "b": jnp.zeros(3)}

    def make(lr):
        return jdl.adam(lr)

    def plain(lr, g, s, params):
        u, s = make(lr).update(g, s, params)
        return optax.apply_updates(params, u), s

    def fused(lr, g, s, params):
        return jdl.fused.apply_gradients(make(lr), g, s, params)

    init = jax.vmap(lambda lr: make(lr).init(p))(rates)
    want = got = (jax.tree.map(lambda x: jnp.stack([x] * 3), p), init)
    for t in range(3):
        g = jax.tree.map(lambda x: jnp.stack([x] * 3), grads_at(t, p))
        want = jax.jit(jax.vmap(plain))(rates, g, want[1], want[0])
        got = jax.jit(jax.vmap(fused))(rates, g, got[1], got[0])
    if _kernel.kernel_available():
        lowered = jax.jit(jax.vmap(fused)).lower(rates, g, got[1], got[0]).as_text()
        assert "jaxopt_dl_fused_adam" in lowered
    chex.assert_trees_all_equal(want[1], got[1])
    chex.assert_trees_all_close(want[0], got[0], rtol=2e-5, atol=1e-7)


def test_train_state_apply_gradients_is_fused():
    """``TrainState.apply_gradients`` (what fit and sweep call) goes through the kernel."""
    tx = CASES["adam"]()
    state = jdl.training.create_train_state(
        jdl.models.MLP(hidden=(16,)), tx, jax.random.key(0), jnp.zeros((1, 8))
    )
    grads = jax.tree.map(lambda x: jnp.full_like(x, 0.3), state.params)
    state = jax.tree.map(jnp.copy, state)  # distinct buffers, so the state can be donated
    step = jax.jit(lambda st, g: st.apply_gradients(grads=g), donate_argnums=0)
    if _kernel.kernel_available():
        assert "jaxopt_dl_fused_adam" in step.lower(state, grads).as_text()
    updates, want_opt = tx.update(grads, state.opt_state, state.params)
    want_params = optax.apply_updates(state.params, updates)
    new = step(state, grads)
    assert int(new.step) == 1
    chex.assert_trees_all_equal(new.opt_state, want_opt)
    chex.assert_trees_all_close(new.params, want_params, rtol=2e-5, atol=1e-7)


def _child(code, **env):
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


def test_switched_off_by_environment():
    out = _child(
        "import jaxopt_dl as jdl; print(jdl.fused.kernel_available())", JAXOPT_DL_NO_KERNEL="1"
    )
    assert out == ["False"]


@needs_kernel
def test_library_is_installed_not_built_at_runtime():
    """The kernel is the extension built at install time, inside the package."""
    path = Path(_kernel.library_path())
    assert path.parent == ROOT / "jaxopt_dl" / "fused"
    assert path.name.startswith("_fused_update")


@needs_kernel
def test_several_devices_only_in_a_local_program():
    code = (
        "import jax, jaxopt_dl as jdl\n"
        "print(jax.device_count(), jdl.fused.kernel_available())\n"
        "with jdl.fused.local_program():\n"
        "    print(jdl.fused.kernel_available())\n"
    )
    out = _child(code, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert out == ["2", "False", "True"]


def _pool_threads():
    """Ids of this process's threads named as the kernel's workers."""
    tasks = Path("/proc/self/task")
    return {t.name for t in tasks.iterdir() if (t / "comm").read_text().strip() == "jdl-fused"}


@needs_kernel
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
def test_threads_persist_between_steps():
    """The kernel's workers start once and stay; later steps start no thread."""
    params = {"w": jnp.linspace(-1.0, 1.0, 2**20, dtype=jnp.float32)}
    tx = CASES["adam"]()
    step, state = fused_step(tx), tx.init(params)
    params, state = step(params, grads_at(0, params), state)
    jax.block_until_ready(params)
    workers = _pool_threads()
    assert len(workers) == (os.cpu_count() or 1) - 1
    for t in range(1, 6):
        params, state = step(params, grads_at(t, params), state)
    jax.block_until_ready(params)
    assert _pool_threads() == workers


# NaNs with payloads whose rounding would carry into the exponent, infinities, values
# that round to infinity or to even in bfloat16, subnormals, signed zeros.
NAN_PAYLOADS = jax.lax.bitcast_convert_type(
    jnp.asarray([0x7FFFFFFF, 0xFFBFFFFF], jnp.uint32), jnp.float32
)
SPECIAL = jnp.concatenate(
    [
        NAN_PAYLOADS,
        jnp.asarray(
            [jnp.nan, jnp.inf, -jnp.inf, 3.0e38, -3.0e38, 1e-40, -1e-45, 0.0, -0.0, 1.0]
            + [1.00390625, 1.01171875, -2.5e-3, 7.0],
            jnp.float32,
        ),
    ]
)


@needs_kernel
@pytest.mark.parametrize("name", ["adam", "adam_bf16_mu", "adam_bf16_mu_nu", "sgd_bf16_trace"])
def test_special_values_match_the_plain_step(name):
    """On :data:`SPECIAL` gradients the kernel's moments are the plain step's bit for bit."""
    tx = CASES[name]()
    params = {"w": jnp.linspace(-1.0, 1.0, SPECIAL.size, dtype=jnp.float32)}
    p1, s1 = params, tx.init(params)
    p2, s2 = jax.tree.map(jnp.copy, params), tx.init(params)
    plain, fused = plain_step(tx), fused_step(tx)
    for t in range(3):
        g = {"w": jnp.roll(SPECIAL, t) * (t + 1)}
        p1, s1 = plain(p1, g, s1)
        p2, s2 = fused(p2, g, s2)
    assert_same_step((p1, s1), (p2, s2))
