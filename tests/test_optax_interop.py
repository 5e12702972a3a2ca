"""A drop-in keeps the user's checkpoints: optax states restore into jaxopt_dl and back.

For every optax-named optimizer, a state written by optax (flax msgpack, orbax's
StandardCheckpointer and PyTreeCheckpointer) is restored into jaxopt_dl's template and
training continues with optax's numbers; and the reverse.
"""

import chex
import flax.serialization
import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
import pytest
from conftest import make_params, noisy_ill_conditioned_grad

import jaxopt_dl as jdl

SCHEDULE = optax.exponential_decay(0.05, transition_steps=3, decay_rate=0.8)

OPTIMIZERS = [
    ("sgd", dict(learning_rate=0.01)),
    ("sgd", dict(learning_rate=SCHEDULE, momentum=0.9)),
    ("adagrad", dict(learning_rate=0.1)),
    ("rmsprop", dict(learning_rate=0.01, centered=True, momentum=0.9)),
    ("rmsprop", dict(learning_rate=0.01, bias_correction=True)),
    ("adadelta", dict(learning_rate=0.5, weight_decay=0.01)),
    ("adam", dict(learning_rate=SCHEDULE)),
    ("adamw", dict(learning_rate=0.01, weight_decay=SCHEDULE)),
    ("adamax", dict(learning_rate=0.01)),
    ("nadam", dict(learning_rate=0.01)),
    ("amsgrad", dict(learning_rate=0.01)),
    ("noisy_sgd", dict(learning_rate=0.01, key=3)),
    ("lamb", dict(learning_rate=0.01)),
    ("lion", dict(learning_rate=0.001)),
    ("adafactor", dict(learning_rate=0.01)),
]


def _is_key(x):
    return jnp.issubdtype(jnp.result_type(x), jax.dtypes.prng_key)


def _msgpack_roundtrip(state, template, directory):
    """flax.serialization; typed PRNG keys travel as their data (msgpack holds no keys)."""
    del directory
    data = jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state)
    plain_template = jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, template)
    restored = flax.serialization.from_bytes(plain_template, flax.serialization.to_bytes(data))
    return jax.tree.map(
        lambda t, r: jax.random.wrap_key_data(r) if _is_key(t) else r, template, restored
    )


def _standard_roundtrip(state, template, directory):
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory / "standard", state)
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(directory / "standard", template)


def _pytree_roundtrip(state, template, directory):
    checkpointer = ocp.PyTreeCheckpointer()
    checkpointer.save(directory / "pytree", state)
    return checkpointer.restore(directory / "pytree", item=template)


ROUNDTRIPS = {
    "msgpack": _msgpack_roundtrip,
    "orbax-standard": _standard_roundtrip,
    "orbax-pytree": _pytree_roundtrip,
}


def _run(opt, params, state, steps, start):
    update = jax.jit(opt.update)
    for step in range(start, start + steps):
        updates, state = update(noisy_ill_conditioned_grad(params, step), state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def _comparable(tree):
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


@pytest.mark.parametrize("direction", ["optax->jaxopt_dl", "jaxopt_dl->optax"])
# optax's 1 - b**t from b rounded to float32 replaced by the accurate form that
# jaxopt_dl computes (tests/test_optax_parity.py bounds the difference): the states
# must continue each other's trajectories to float32 rounding.
@pytest.mark.usefixtures("accurate_optax")
@pytest.mark.parametrize(
    "name,kwargs",
    OPTIMIZERS,
    ids=[n + "-" + "-".join(k for k in kw if k != "learning_rate") for n, kw in OPTIMIZERS],
)
def test_state_written_by_one_library_continues_in_the_other(name, kwargs, direction, tmp_path):
    ours, theirs = getattr(jdl, name)(**kwargs), getattr(optax, name)(**kwargs)
    writer, reader = (theirs, ours) if direction == "optax->jaxopt_dl" else (ours, theirs)
    params = make_params()
    params, state = _run(writer, params, writer.init(params), steps=4, start=0)
    # What the writer would have done next: the reference.
    want_params, want_state = _run(writer, params, state, steps=4, start=4)
    for label, roundtrip in ROUNDTRIPS.items():
        restored = roundtrip(state, reader.init(params), tmp_path / label)
        assert jax.tree.structure(restored) == jax.tree.structure(reader.init(params)), label
        got_params, got_state = _run(reader, params, restored, steps=4, start=4)
        chex.assert_trees_all_close(got_params, want_params, rtol=2e-5, atol=1e-7)
        chex.assert_trees_all_close(
            _comparable(got_state), _comparable(want_state), rtol=2e-5, atol=1e-7
        )
