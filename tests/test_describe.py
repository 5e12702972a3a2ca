"""The description seam: what every transform is, read back from the transform itself."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state

import jaxopt_dl as jdl
from jaxopt_dl import _core, registry

PARAMS = {"a": jnp.ones(3), "w": jnp.linspace(0.5, 1.5, 6).reshape(3, 2)}
GRADS = {"a": jnp.full(3, 0.5), "w": jnp.full((3, 2), -0.25)}
SCHEDULE = optax.exponential_decay(0.1, transition_steps=1, decay_rate=0.5)


def kinds(tx):
    return [(leaf.description.kind, leaf.description.kernel) for leaf in _leaves(tx)]


def _leaves(tx):
    return _core.leaf_blocks(jdl.describe(tx), tx.init(PARAMS))


def test_adam_is_its_blocks_with_kernel_parts():
    d = jdl.describe(jdl.adam(1e-3, b2=0.99))
    assert (d.name, d.kind) == ("adam", "chain")
    assert [(c.kind, c.kernel) for c in d.children] == [
        ("scale_by_adam", "adam"),
        ("scale_by_learning_rate", "learning_rate"),
    ]
    adam = d.children[0].hyperparams
    assert {k: adam[k] for k in ("b1", "b2", "nesterov", "bias_correction")} == {
        "b1": 0.9,
        "b2": 0.99,
        "nesterov": False,
        "bias_correction": True,
    }
    assert set(adam) >= {"eps", "eps_root", "mu_dtype", "nu_dtype"}


def test_hyperparameters_keep_their_values_and_types():
    b1 = np.float64(0.9)
    d = jdl.describe(jdl.adamw(SCHEDULE, b1=b1, mu_dtype=jnp.bfloat16))
    assert d.hyperparams["b1"] is b1 and d.hyperparams["learning_rate"] is SCHEDULE
    assert d.children[0].hyperparams["mu_dtype"] is jnp.bfloat16
    assert [c.kernel for c in d.children] == ["adam", "decoupled_decay", "learning_rate"]


def test_momentum_trace_form_describes_like_sgd_momentum():
    a = jdl.describe(jdl.momentum(0.1, 0.9, form="trace"))
    b = jdl.describe(jdl.sgd(0.1, momentum=0.9))
    assert [c.spec() for c in a.children] == [c.spec() for c in b.children]
    assert a.children[0].kernel == "trace"


def test_recipes_read_through_optax_composers():
    clip = jdl.chain(jdl.clip_by_global_norm(1.0), jdl.adam(1e-3))
    assert kinds(clip) == [
        ("clip_by_global_norm", "clip_by_global_norm"),
        ("scale_by_adam", "adam"),
        ("scale_by_learning_rate", "learning_rate"),
    ]
    assert kinds(optax.chain(jdl.add_l2(1e-4), jdl.adam(1e-3)))[0] == ("add_l2", "add_l2")
    assert kinds(optax.chain(jdl.adam(1e-3))) == kinds(jdl.adam(1e-3))
    assert kinds(optax.flatten(jdl.adam(1e-3))) == kinds(jdl.adam(1e-3))


@pytest.mark.parametrize(
    "wrap,kind",
    [
        (lambda tx: optax.masked(tx, {"a": True, "w": False}), "masked"),
        (lambda tx: jdl.masked(tx, {"a": True, "w": False}), "masked"),
        (lambda tx: optax.apply_if_finite(tx, 3), "apply_if_finite"),
        (lambda tx: jdl.apply_if_finite(tx, 3), "apply_if_finite"),
        (lambda tx: optax.flatten(tx), "flatten"),
        (lambda tx: optax.MultiSteps(tx, 2), "MultiSteps"),
        (lambda tx: optax.multi_transform({"x": tx}, {"a": "x", "w": "x"}), "multi_transform"),
    ],
)
def test_wrappers_compose_descriptions_and_states(wrap, kind):
    tx = wrap(jdl.sgd(SCHEDULE, momentum=0.9))
    d = jdl.describe(tx)
    assert d.kind == kind
    if isinstance(tx, optax.MultiSteps):
        tx = tx.gradient_transformation()
    state = tx.init(PARAMS)
    leaves = _core.leaf_blocks(d, state)
    assert [leaf.description.kernel for leaf in leaves] == ["trace", "learning_rate"]
    assert leaves[0].path[0][0].kind == kind
    # Replace the leaves by the leaves of a stepped state: the whole state is rebuilt.
    _, stepped = tx.update(GRADS, state, PARAMS)
    new = [leaf.state for leaf in _core.leaf_blocks(d, stepped)]
    rebuilt = _core.replace_leaf_states(d, state, new)
    assert jax.tree.structure(rebuilt) == jax.tree.structure(stepped)
    for got, want in zip(
        jax.tree.leaves(_core.leaf_blocks(d, rebuilt)[0].state), jax.tree.leaves(new[0])
    ):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="leaf"):
        _core.replace_leaf_states(d, state, new[:1])


def test_unknown_transforms_are_opaque_never_none():
    assert jdl.describe(optax.scale_by_adam()).kind == "opaque"
    assert jdl.describe(object()).kind == "opaque"


def test_description_travels_through_train_state():
    tx = jdl.adam(SCHEDULE)
    ts = train_state.TrainState.create(apply_fn=None, params=PARAMS, tx=tx)
    ts = jax.jit(lambda s: s.apply_gradients(grads=GRADS))(ts)
    assert jdl.describe(ts.tx).name == "adam"
    assert float(jdl.current_learning_rate(ts.opt_state, ts.tx)) == pytest.approx(
        float(SCHEDULE(1))
    )


def test_blocks_keep_their_own_docstrings():
    for name in ("trace", "ema", "scale", "clip", "add_decayed_weights", "masked", "lamb"):
        doc = getattr(jdl, name).__doc__
        assert not doc.startswith("optax."), name
        assert "Args:" in doc, name


@pytest.mark.parametrize("name", list(registry.OPTIMIZERS))
def test_registry_entries_build_described_optimizers(name):
    tx = registry.example(name)
    assert jdl.describe(tx).name == name
    assert "learning_rate" in registry.hyperparameters(name) or registry.OPTIMIZERS[name].wraps
    assert getattr(jdl, name) is registry.factory(name)


def test_docs_registry_table_is_the_registry():
    page = (Path(__file__).resolve().parents[1] / "docs" / "reference" / "registry.md").read_text()
    table = page.split("<!-- registry-table -->\n")[1].split("<!-- /registry-table -->")[0]
    assert table.strip() == registry.markdown_table()
