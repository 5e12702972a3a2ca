"""fused_adam against jdl.adam (itself optax.adam for float32): moments bitwise, params to rtol 2e-5."""

import chex
import flax.training.train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_dl as jdl
from jaxopt_dl import _fused

STEPS = 50
PARAMS = {
    "big": jnp.linspace(-1.0, 1.0, 3000, dtype=jnp.float32),
    "w": jnp.arange(21, dtype=jnp.float32).reshape(3, 7) / 21,
    "b16": jnp.ones((5,), jnp.bfloat16),
    "half": jnp.ones((4,), jnp.float16) * 0.5,
    "nested": [jnp.zeros((2, 2), jnp.float32), jnp.full((6,), 2.0, jnp.float32)],
}


def grads_at(t, params):
    return jax.tree.map(
        lambda x: (jax.random.normal(jax.random.PRNGKey(t), x.shape) * (t % 7 + 1)).astype(x.dtype),
        params,
    )


CASES = [  # (name, reference factory, fused factory)
    ("plain", lambda: jdl.adam(1e-2), lambda: jdl.fused_adam(1e-2)),
    ("jdl_eps_root", lambda: jdl.adam(3e-3, b1=0.8, eps_root=1e-6),
     lambda: jdl.fused_adam(3e-3, b1=0.8, eps_root=1e-6)),
    ("schedule", lambda: jdl.adam(optax.cosine_decay_schedule(1e-2, STEPS)),
     lambda: jdl.fused_adam(optax.cosine_decay_schedule(1e-2, STEPS))),
    ("no_bias_correction", lambda: jdl.adam(1e-3, bias_correction=False),
     lambda: jdl.fused_adam(1e-3, bias_correction=False)),
    ("bf16_mu", lambda: jdl.adam(1e-3, mu_dtype=jnp.bfloat16),
     lambda: jdl.fused_adam(1e-3, mu_dtype=jnp.bfloat16)),
]


def run(reference, fused, mode):
    """Both optimizers for STEPS jitted steps; returns final params and moments."""

    def ref_step(p, g, s):
        u, s = reference.update(g, s, p)
        return optax.apply_updates(p, u), s

    def fused_step(p, g, s):
        if mode == "return_params":
            return fused.update(g, s, p, return_params=True)
        if mode == "chain":  # the fused transform inside an optax chain
            return fused_step.chained(p, g, s)
        u, s = fused.update(g, s, p)
        return optax.apply_updates(p, u), s

    chained = optax.chain(optax.identity(), fused)

    def chain_step(p, g, s):
        u, s = chained.update(g, s, p)
        return optax.apply_updates(p, u), s

    fused_step.chained = chain_step
    ref_jit, fused_jit = jax.jit(ref_step), jax.jit(fused_step, donate_argnums=(0, 2))
    p1, s1 = PARAMS, reference.init(PARAMS)
    p2 = jax.tree.map(jnp.copy, PARAMS)
    s2 = chained.init(p2) if mode == "chain" else fused.init(p2)
    for t in range(STEPS):
        g = grads_at(t, PARAMS)
        p1, s1 = ref_jit(p1, g, s1)
        p2, s2 = fused_jit(p2, g, s2)
    adam2 = s2[1][0] if mode == "chain" else s2[0]
    return (p1, s1[0].mu, s1[0].nu), (p2, adam2.mu, adam2.nu)


# Every configuration with plain update + apply; the other two modes on two of them
# (to keep the number of compiles low).
TABLE = [(c, "updates") for c in CASES] + [
    (c, mode) for c in CASES if c[0] in ("plain", "bf16_mu") for mode in ("return_params", "chain")
]


@pytest.mark.parametrize("case,mode", TABLE, ids=[f"{c[0]}-{m}" for c, m in TABLE])
def test_matches_adam(case, mode):
    _, reference, fused = case
    (p1, mu1, nu1), (p2, mu2, nu2) = run(reference(), fused(), mode)
    # Moments: the kernel performs XLA's own operations, bit for bit.
    chex.assert_trees_all_equal(mu1, mu2)
    chex.assert_trees_all_equal(nu1, nu2)
    # Parameters: XLA contracts p + lr * d into an FMA only in some fusions, so the
    # last bit can differ; 50 steps stay far inside optax-parity tolerance.
    chex.assert_trees_all_close(p1, p2, rtol=2e-5, atol=1e-7)


def test_kernel_is_used_on_cpu():
    """On a single-device CPU the f32 leaves really go through the FFI kernel."""
    if not _fused.kernel_available():
        pytest.skip("fused kernel not buildable here")
    opt = jdl.fused_adam(1e-3)
    hlo = jax.jit(lambda g, s: opt.update(g, s)).lower(PARAMS, opt.init(PARAMS)).as_text()
    assert "jaxopt_dl_fused_adam" in hlo


def test_fallback_equals_plain_adam():
    """use_kernel=False is exactly jdl.adam (same program)."""
    (p1, mu1, nu1), (p2, mu2, nu2) = run(jdl.adam(1e-2), jdl.fused_adam(1e-2, use_kernel=False), "updates")
    chex.assert_trees_all_equal((p1, mu1, nu1), (p2, mu2, nu2))


def test_vmap_over_learning_rate():
    rates = jnp.array([1e-3, 1e-2, 1e-1])
    p = {"w": jnp.linspace(-1.0, 1.0, 64)}
    g = {"w": jnp.cos(jnp.arange(64.0))}

    def one(lr, opt_fn):
        opt = opt_fn(lr)
        s = opt.init(p)
        u, s = opt.update(g, s, p)
        u, s = opt.update(g, s, p)
        return u

    got = jax.jit(jax.vmap(lambda lr: one(lr, jdl.fused_adam)))(rates)
    want = jax.jit(jax.vmap(lambda lr: one(lr, optax.adam)))(rates)
    chex.assert_trees_all_close(got, want, rtol=2e-5, atol=1e-9)


def test_flax_train_state():
    tx = jdl.fused_adam(1e-2)
    state = flax.training.train_state.TrainState.create(apply_fn=None, params=PARAMS, tx=tx)
    ref = flax.training.train_state.TrainState.create(apply_fn=None, params=PARAMS, tx=jdl.adam(1e-2))
    step = jax.jit(lambda st, g: st.apply_gradients(grads=g))
    for t in range(3):
        state, ref = step(state, grads_at(t, PARAMS)), step(ref, grads_at(t, PARAMS))
    chex.assert_trees_all_close(state.params, ref.params, rtol=2e-5, atol=1e-7)


def test_return_params_needs_params():
    opt = jdl.fused_adam(1e-3)
    with pytest.raises(ValueError, match="params=None"):
        opt.update(PARAMS, opt.init(PARAMS), None, return_params=True)


def test_mismatched_tree_is_rejected():
    opt = jdl.fused_adam(1e-3)
    with pytest.raises(ValueError, match="gradient"):
        opt.update({"w": jnp.ones(3)}, opt.init({"v": jnp.ones(3)}))


# ---------------------------------------------------------------- flat_state=True
FLAT_PARAMS = {"big": PARAMS["big"], "w": PARAMS["w"], "nested": PARAMS["nested"]}


def flatten(tree):
    return jnp.concatenate([x.reshape(-1) for x in jax.tree.leaves(tree)])


@pytest.mark.parametrize("return_params", [False, True])
@pytest.mark.parametrize("use_kernel", [True, False])
def test_flat_state_matches_adam(use_kernel, return_params):
    """Flat moments hold adam's moments bit for bit, leaves concatenated in order."""
    reference = jdl.adam(optax.cosine_decay_schedule(1e-2, STEPS))
    fused = jdl.fused_adam(optax.cosine_decay_schedule(1e-2, STEPS), flat_state=True,
                           use_kernel=use_kernel)

    def ref_step(p, g, s):
        u, s = reference.update(g, s, p)
        return optax.apply_updates(p, u), s

    def fused_step(p, g, s):
        if return_params:
            return fused.update(g, s, p, return_params=True)
        u, s = fused.update(g, s, p)
        return optax.apply_updates(p, u), s

    ref_jit, fused_jit = jax.jit(ref_step), jax.jit(fused_step, donate_argnums=(0, 2))
    p1, s1 = FLAT_PARAMS, reference.init(FLAT_PARAMS)
    p2 = jax.tree.map(jnp.copy, FLAT_PARAMS)
    s2 = fused.init(p2)
    assert s2[0].mu.shape == (sum(x.size for x in jax.tree.leaves(FLAT_PARAMS)),)
    for t in range(20):
        g = grads_at(t, FLAT_PARAMS)
        p1, s1 = ref_jit(p1, g, s1)
        p2, s2 = fused_jit(p2, g, s2)
    np.testing.assert_array_equal(flatten(s1[0].mu), s2[0].mu)
    np.testing.assert_array_equal(flatten(s1[0].nu), s2[0].nu)
    chex.assert_trees_all_equal(s1[0].count, s2[0].count)
    chex.assert_trees_all_equal(s1[1], s2[1])
    chex.assert_trees_all_close(p1, p2, rtol=2e-5, atol=1e-7)


def test_flat_state_uses_kernel_and_no_concatenate():
    if not _fused.kernel_available():
        pytest.skip("fused kernel not buildable here")
    opt = jdl.fused_adam(1e-3, flat_state=True)
    params = [jnp.ones(7)] * 40  # 3 kernel calls chained through the flat buffers
    hlo = jax.jit(lambda p, g, s: opt.update(g, s, p, return_params=True)).lower(
        params, params, opt.init(params)).as_text()
    assert hlo.count("jaxopt_dl_fused_adam") == 3
    copies = [line for line in hlo.splitlines() if "concatenate" in line or "slice" in line]
    assert not [line for line in copies if "280xf32" in line]  # the flat buffers: 40 * 7


@pytest.mark.parametrize("bad", [
    dict(params={"w": jnp.ones(3, jnp.bfloat16)}, kwargs={}, match="float32 leaves"),
    dict(params={"w": jnp.ones(3)}, kwargs={"mu_dtype": jnp.bfloat16}, match="mu_dtype"),
])
def test_flat_state_rejects_other_dtypes(bad):
    with pytest.raises(ValueError, match=bad["match"]):
        jdl.fused_adam(1e-3, flat_state=True, **bad["kwargs"]).init(bad["params"])


def test_flat_state_rejects_other_tree():
    opt = jdl.fused_adam(1e-3, flat_state=True)
    with pytest.raises(ValueError, match="flat state"):
        opt.update({"w": jnp.ones(4)}, opt.init({"w": jnp.ones(3)}))


def test_large_leaves_stay_in_xla_without_return_params():
    """Without return_params the kernel takes only leaves under SMALL_LEAF elements."""
    if not _fused.kernel_available():
        pytest.skip("fused kernel not buildable here")
    opt = jdl.fused_adam(1e-3)
    params = {"big": jnp.ones(_fused.SMALL_LEAF), "small": jnp.ones(10)}
    lower = lambda **kw: jax.jit(lambda p, g, s: opt.update(g, s, p, **kw)).lower(  # noqa: E731
        params, params, opt.init(params)).as_text()
    assert f"tensor<{_fused.SMALL_LEAF}xf32>" not in lower().split("jaxopt_dl_fused_adam")[1].split("\n")[0]
    assert lower(return_params=True).count("jaxopt_dl_fused_adam") == 1
