"""diagnostics: gradient_check (catches a wrong custom_vjp) and per-step diagnostics
against NumPy."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxopt_dl import diagnostics
from jaxopt_dl.diagnostics import gradient_check


@jax.custom_vjp
def wrong_sin(x):
    return jnp.sin(x)


def _wrong_fwd(x):
    return jnp.sin(x), x


def _wrong_bwd(x, g):
    return (g * jnp.sin(x),)  # should be cos(x)


wrong_sin.defvjp(_wrong_fwd, _wrong_bwd)


def _params():
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    return {"dense": {"kernel": jax.random.normal(k1, (3, 4)), "bias": jnp.zeros(4)},
            "scale": jax.random.normal(k2, (4,))}  # fmt: skip


X = np.linspace(-1.0, 1.0, 15).reshape(5, 3)


def _mlp_loss(act):
    def loss(p):
        h = act(jnp.asarray(X, p["scale"].dtype) @ p["dense"]["kernel"] + p["dense"]["bias"])
        return jnp.mean((h * p["scale"]) ** 2) + jnp.sum(jnp.log1p(p["scale"] ** 2))

    return loss


@pytest.mark.parametrize("act", [jnp.tanh, jnp.sin, jax.nn.softplus])
def test_gradient_check_passes_for_correct_gradients(act):
    res = gradient_check(_mlp_loss(act), _params())
    assert res.ok, res.errors
    assert res.max_relative_error < 1e-8
    assert set(res.errors) == {"dense/bias", "dense/kernel", "scale"}
    assert res.numerical["scale"].dtype == jnp.float64
    assert jnp.ones(2).dtype == jnp.float32  # x64 did not leak


def test_gradient_check_catches_wrong_custom_vjp():
    res = gradient_check(_mlp_loss(wrong_sin), _params())
    assert not res.ok
    assert res.max_relative_error > 1e-2
    assert res.errors["dense/kernel"] > 1e-2
    assert res.errors["scale"] < 1e-8  # the scale's gradient does not pass through wrong_sin


def test_gradient_check_numerical_matches_analytic_formula():
    p = {"w": jnp.array([0.3, -1.2, 2.0])}
    res = gradient_check(lambda q: jnp.sum(jnp.exp(q["w"])), p)
    np.testing.assert_allclose(res.numerical["w"], np.exp(np.asarray(p["w"], np.float64)),
                               rtol=1e-8)  # fmt: skip


def test_gradient_check_bad_input():
    with pytest.raises(ValueError, match="scalar"):
        gradient_check(lambda p: p["w"] * 2, {"w": jnp.ones(2)})
    with pytest.raises(ValueError, match="eps"):
        gradient_check(lambda p: jnp.sum(p["w"]), {"w": jnp.ones(2)}, eps=-1.0)


def test_ratios_and_norms_match_numpy_under_jit():
    params = _params()
    updates = jax.tree.map(lambda p: 1e-3 * jnp.ones_like(p), params)
    ratios = jax.jit(diagnostics.update_weight_ratio)(params, updates)
    norms = jax.jit(diagnostics.gradient_norms)(params)
    flat = {"dense/kernel": params["dense"]["kernel"], "dense/bias": params["dense"]["bias"],
            "scale": params["scale"]}  # fmt: skip
    for path, p in flat.items():
        p = np.asarray(p)
        u = 1e-3 * np.ones_like(p)
        np.testing.assert_allclose(ratios[path], np.linalg.norm(u) / (np.linalg.norm(p) + 1e-12),
                                   rtol=1e-5)  # fmt: skip
        np.testing.assert_allclose(norms[path], np.linalg.norm(p), rtol=1e-5)
    total = np.sqrt(sum(np.sum(np.asarray(p) ** 2) for p in flat.values()))
    np.testing.assert_allclose(norms["global"], total, rtol=1e-5)


class _Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(6, name="hidden")(x))
        self.sow("intermediates", "hidden_act", h)
        out = nn.Dense(2, name="out")(h)
        self.sow("intermediates", "logits", out)
        return out


def test_activation_stats_from_flax_intermediates_match_numpy():
    net = _Net()
    x = jnp.asarray(X, jnp.float32)
    variables = net.init(jax.random.PRNGKey(1), x)
    _, state = net.apply(variables, x, mutable=["intermediates"])
    stats = jax.jit(diagnostics.activation_stats)(state["intermediates"])
    p = variables["params"]
    h = np.maximum(
        np.asarray(x) @ np.asarray(p["hidden"]["kernel"]) + np.asarray(p["hidden"]["bias"]), 0
    )
    out = h @ np.asarray(p["out"]["kernel"]) + np.asarray(p["out"]["bias"])
    for name, ref in (("hidden_act/0", h), ("logits/0", out)):
        np.testing.assert_allclose(stats[f"{name}/mean"], ref.mean(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stats[f"{name}/std"], ref.std(), rtol=1e-5, atol=1e-6)


def test_nonfinite_detection():
    tree = {"a": jnp.ones(3), "b": {"c": jnp.array([0.0, jnp.inf]), "d": jnp.array([jnp.nan] * 2)}}
    assert diagnostics.first_nonfinite(tree) == "b/c"
    assert diagnostics.first_nonfinite({"a": jnp.ones(2)}) is None
    assert int(jax.jit(diagnostics.nonfinite_count)(tree)) == 3
    mask = jax.jit(diagnostics.nonfinite_mask)(tree)
    assert jax.tree.map(bool, mask) == {"a": False, "b": {"c": True, "d": True}}


def test_summarize_bundles_everything_and_jits():
    params = _params()
    grads = jax.tree.map(lambda p: 2 * p, params)
    updates = jax.tree.map(lambda g: -1e-3 * g, grads)
    inter = {"layer": (jnp.arange(4.0),)}
    eager = diagnostics.summarize(params, grads, updates, inter)
    jitted = jax.jit(diagnostics.summarize)(params, grads, updates, inter)
    chex.assert_trees_all_close(eager, jitted, rtol=1e-6)
    assert eager["nonfinite/grads"] == 0
    np.testing.assert_allclose(eager["update_ratio/scale"], 2e-3, rtol=1e-5)
    np.testing.assert_allclose(eager["activation/layer/0/mean"], 1.5)
    assert "grad_norm/global" in eager and "grad_norm/dense/kernel" in eager
