"""The central hyperparameter checks of ``_core``: what they reject, and what passes.

Rejected: ``None`` (unless allowed), strings, bools where numbers go and numbers where
bools go, NaN and infinity ("must be finite"), out-of-range values -- each with a
``TypeError``/``ValueError`` naming the argument and the value. Passed unchecked:
arrays and traced values, so jit and vmap over hyperparameters keep working.
"""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_dl as jdl
from jaxopt_dl import _core

NUMBER_CHECKS = {
    "nonnegative": lambda v, **kw: _core.check_nonnegative("arg", v, **kw),
    "positive": lambda v, **kw: _core.check_positive("arg", v, **kw),
    "decay": lambda v, **kw: _core.check_decay("arg", v, **kw),
    "in_range": lambda v, **kw: _core.check_in_range("arg", v, 0.0, 2.0, **kw),
    "finite": lambda v, **kw: _core.check_finite("arg", v, **kw),
    "int": lambda v, **kw: _core.check_int("arg", v, 0, **kw),
    "learning_rate": lambda v, **kw: _core.check_learning_rate(v, "arg", **kw),
}


class Opaque:
    """An object that is no number (its repr is stable, so test ids match across workers)."""

    def __repr__(self) -> str:
        return "Opaque()"


WRONG_KIND = [None, "0.1", True, False, np.bool_(True), 1j, [0.1], Opaque()]


@pytest.mark.parametrize("check", sorted(NUMBER_CHECKS))
@pytest.mark.parametrize("value", WRONG_KIND, ids=repr)
def test_a_non_number_raises_type_error_naming_argument_and_value(check, value):
    with pytest.raises(TypeError, match=r"arg.*" + _escaped(value)):
        NUMBER_CHECKS[check](value)


@pytest.mark.parametrize("check", sorted(NUMBER_CHECKS))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan")], ids=repr)
def test_nan_and_infinity_must_be_finite(check, value):
    with pytest.raises(ValueError, match=r"arg must be finite, got arg=" + _escaped(value)):
        NUMBER_CHECKS[check](value)


OUT_OF_RANGE = [
    ("nonnegative", -1e-9),
    ("positive", 0),
    ("positive", -2),
    ("decay", 1.0),
    ("decay", -0.1),
    ("in_range", 2.5),
    ("int", 1.5),
    ("int", -1),
    ("learning_rate", -0.1),
]


@pytest.mark.parametrize("check,value", OUT_OF_RANGE)
def test_out_of_range_raises_value_error_naming_argument_and_value(check, value):
    with pytest.raises(ValueError, match=r"arg must be .*, got arg=" + _escaped(value)):
        NUMBER_CHECKS[check](value)


IN_RANGE = [
    ("nonnegative", 0),
    ("positive", np.float32(1e-30)),
    ("decay", 0.0),
    ("decay", 0.999),
    ("in_range", 2),
    ("finite", -1e300),
    ("int", 3),
    ("int", 10.0),
    ("int", np.int64(7)),
    ("learning_rate", 0.0),
]


@pytest.mark.parametrize("check,value", IN_RANGE)
def test_values_in_range_pass(check, value):
    NUMBER_CHECKS[check](value)


@pytest.mark.parametrize("check", sorted(NUMBER_CHECKS))
def test_none_passes_only_when_allowed(check):
    NUMBER_CHECKS[check](None, allow_none=True)
    with pytest.raises(TypeError, match="arg.*None"):
        NUMBER_CHECKS[check](None)


@pytest.mark.parametrize("check", sorted(set(NUMBER_CHECKS) - {"int"}))
def test_arrays_schedules_and_traced_values_pass_under_jit_and_vmap(check):
    fn = NUMBER_CHECKS[check]
    fn(jnp.asarray(-5.0))  # a concrete array is not range-checked (it may be a sweep)
    fn(np.asarray([0.1, 0.2]))
    fn(lambda step: 0.1)

    def checked(value):
        fn(value)
        return value * 2

    np.testing.assert_allclose(jax.jit(checked)(0.5), 1.0)
    np.testing.assert_allclose(jax.jit(jax.vmap(checked))(jnp.asarray([0.1, 0.5])), [0.2, 1.0])


def test_traced_integer_counts_pass_and_boolean_arrays_are_not_numbers():
    jax.jit(lambda n: _core.check_int("n", n) or n)(3)
    with pytest.raises(TypeError, match="arg must be a numeric array"):
        _core.check_positive("arg", jnp.asarray([True, False]))


@pytest.mark.parametrize("value", [True, False, np.bool_(False), jnp.asarray(True)], ids=repr)
def test_check_bool_accepts_bools(value):
    _core.check_bool("flag", value)
    jax.jit(lambda b: _core.check_bool("flag", b) or b)(value)


@pytest.mark.parametrize("value", [1, 0, 1.0, "yes", None, jnp.asarray(1)], ids=repr)
def test_check_bool_rejects_numbers_strings_and_none(value):
    with pytest.raises(TypeError, match="flag must be a bool, got flag="):
        _core.check_bool("flag", value)


def test_check_choice_rejects_bools_and_unknown_values():
    _core.check_choice("mode", "a", ("a", "b"))
    for value in ("c", None, True):
        with pytest.raises(ValueError, match=f"mode must be one of .*, got mode={value!r}"):
            _core.check_choice("mode", value, ("a", "b"))


def _escaped(value) -> str:
    return re.escape(repr(value))


@pytest.mark.parametrize(
    "key",
    [0, 7, np.int64(3), jnp.asarray(0), jnp.asarray(5, jnp.uint32)],
    ids=repr,
)
def test_check_key_accepts_integer_seeds(key):
    _core.check_key("key", key)


def test_check_key_accepts_prng_keys_and_traced_seeds():
    _core.check_key("key", jax.random.key(0))
    _core.check_key("key", jax.random.PRNGKey(0))
    jax.jit(lambda k: _core.check_key("key", k) or k)(jnp.asarray(1))
    jax.jit(lambda k: _core.check_key("key", k) or 0)(jax.random.key(1))


@pytest.mark.parametrize("key", ["0", 1.0, -1.0, True, jnp.asarray(0.5)], ids=repr)
def test_check_key_rejects_floats_bools_and_strings_naming_the_value(key):
    with pytest.raises(TypeError, match=r"key.*" + _escaped(key)):
        _core.check_key("key", key)


@pytest.mark.parametrize("key", [math.nan, math.inf], ids=repr)
def test_check_key_says_nan_and_infinity_must_be_finite(key):
    with pytest.raises(TypeError, match="must be finite"):
        _core.check_key("key", key)


def test_check_transform_names_the_argument_and_value():
    _core.check_transform("inner", optax.sgd(0.1))
    for bad in (None, "adam", optax.sgd):
        with pytest.raises(TypeError, match=r"inner.*" + _escaped(bad)):
            _core.check_transform("inner", bad)


@pytest.mark.parametrize(
    "build,argument",
    [
        (lambda: jdl.sgd(0.1, momentum=0.9, nesterov="no"), "nesterov"),
        (lambda: jdl.adam(0.1, nesterov="no"), "nesterov"),
        (lambda: jdl.rmsprop(0.1, centered="no"), "centered"),
        (lambda: jdl.momentum(0.1, nesterov="no"), "nesterov"),
        (lambda: jdl.trace(0.9, nesterov="no"), "nesterov"),
        (lambda: jdl.radam(decoupled_weight_decay="no"), "decoupled_weight_decay"),
        (lambda: jdl.adabelief(0.1, nesterov="no"), "nesterov"),
        (lambda: jdl.adagrad(0.1, eps_in_sqrt="no"), "eps_in_sqrt"),
    ],
)
def test_a_string_for_a_bool_raises_naming_argument_and_value(build, argument):
    with pytest.raises(TypeError, match=f"{argument} must be a bool, got {argument}='no'"):
        build()


def test_numpy_bools_are_bools():
    tx = jdl.sgd(0.1, momentum=0.9, nesterov=np.bool_(True))
    assert jdl.describe(tx).children[0].hyperparams["nesterov"]


@pytest.mark.parametrize("factory", [jdl.adam, jdl.yogi, jdl.radam, jdl.torch_nadam, jdl.lamb])
def test_a_missing_learning_rate_raises_the_same_error_everywhere(factory):
    with pytest.raises(ValueError, match="learning_rate must be a number, an array or a schedule"):
        factory(None)
