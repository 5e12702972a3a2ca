"""No input slips through: every public factory x the inputs people actually mistype.

Every public factory of the library (optimizers, blocks, wrappers, schedules,
reduce-on-plateau, batch-size schedules, initializers, and the options of ``minimize``,
``least_squares`` and ``gradient_check``) is found from the package's namespaces with
``inspect.signature``, so a new factory is covered without editing this file. Each
argument that takes a number gets ``None``, a string, a bool, NaN, infinity, a negative
number, zero and out-of-range decays; each argument that takes a bool gets a number, a
string and ``None``; every other argument that does not default to ``None`` gets
``None``. A value either works as documented -- the factory builds AND its result runs
(two optimizer steps, a schedule evaluated eagerly and jitted, an initializer called, a
solve finished) with finite results -- or raises ``ValueError``/``TypeError`` naming the
argument and the value ("must be finite" for NaN and infinity).
"""

from __future__ import annotations

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_dl as jdl
from jaxopt_dl import initializers, schedules
from jaxopt_dl.second_order import minimization
from jaxopt_dl.training import batch_size

# --------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------

# Public callables of ``jaxopt_dl`` that build nothing from hyperparameters.
NOT_FACTORIES = {
    "apply_updates": "applies updates, takes trees",
    "chain": "composes transforms, takes no hyperparameter",
    "current_learning_rate": "reads a state",
    "describe": "reads a transform (anything else is opaque)",
    "global_norm": "a tree function",
    "safe_increment": "a counter function",
    "asgd_average": "reads a state",
    "averaged_params": "reads a state",
    "schedule_free_eval_params": "reads a state and params",
    "diagnose": "runs a training procedure on a model and data",
    "lr_find": "runs a training procedure on a model and data",
    "lr_ramp": "runs a training procedure on a model and data",
    "plot_lr_find": "file output of a result",
}
# Public names of ``jaxopt_dl.initializers`` that are not initializer factories.
NOT_INITIALIZER_FACTORIES = {
    "Initializer": "a type",
    "fans": "a shape function",
    "zeros": "an initializer itself, called with (key, shape)",
    "save_params": "file input/output",
    "from_pretrained": "file input/output",
}


def _solver(solve, method: str | None):
    """``solve(fun, x0, ...)`` as a factory of its options, one per ``minimize`` method."""
    if method is None:
        signature = inspect.signature(solve)
        params = [p for p in signature.parameters.values() if p.name not in ("residual_fn", "x0")]

        def factory(**kwargs):
            return solve(lambda x: x - 1.0, jnp.zeros(2), **kwargs)

    else:
        options = minimization._DEFAULTS[method]
        params = [
            p for p in inspect.signature(solve).parameters.values() if p.name in ("maxiter", "tol")
        ] + [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
            for name, default in options.items()
        ]

        def factory(**kwargs):
            return solve(lambda x: jnp.sum((x - 1.0) ** 2), jnp.zeros(2), method=method, **kwargs)

    factory.__signature__ = inspect.Signature(params)
    return factory


def _gradient_check(**kwargs):
    return jdl.gradient_check(lambda x: jnp.sum(x**2), jnp.arange(3.0), **kwargs)


_gradient_check.__signature__ = inspect.Signature(
    [
        p
        for p in inspect.signature(jdl.gradient_check).parameters.values()
        if p.name not in ("fun", "params")
    ]
)


def discover() -> dict:
    found = {}
    for name in dir(jdl):
        obj = getattr(jdl, name)
        if name.startswith("_") or inspect.ismodule(obj) or name in NOT_FACTORIES:
            continue
        factory = inspect.isfunction(obj) or obj is jdl.MultiSteps  # not types, not aliases
        if factory and name not in ("minimize", "least_squares", "gradient_check"):
            found[name] = obj
    for name in initializers.__all__:
        if name not in NOT_INITIALIZER_FACTORIES:
            found[f"initializers.{name}"] = getattr(initializers, name)
    found["least_squares"] = _solver(jdl.least_squares, None)
    for method in minimization._DEFAULTS:
        found[f"minimize[{method}]"] = _solver(jdl.minimize, method)
    found["gradient_check"] = _gradient_check
    return found


FACTORIES = discover()


def test_discovery_finds_every_kind_of_factory():
    for name in (
        "adam",
        "sgd",
        "scale_by_adam",
        "clip",
        "masked",
        "MultiSteps",
        "inject_hyperparams",
        "radam",
        "reduce_on_plateau",
        "initializers.sparse",
        "minimize[lbfgs]",
        "least_squares",
    ):
        assert name in FACTORIES
    assert set(schedules.__all__) - {"ReduceLROnPlateauState"} <= set(FACTORIES)
    assert set(batch_size.__all__) - {"BatchSizeSchedule"} <= set(FACTORIES)


# --------------------------------------------------------------------------
# A valid call of each factory, and running what it built
# --------------------------------------------------------------------------

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.ones(3)}

# Valid values of required arguments, by argument name.
REQUIRED = {
    "learning_rate": 0.1,
    "decay": 0.9,
    "max_delta": 1.0,
    "max_norm": 1.0,
    "threshold": 1.0,
    "clipping": 0.1,
    "step_size": 0.1,
    "weight": 0.1,
    "l1": 0.1,
    "l2": 0.1,
    "eta": 0.01,
    "gamma": 0.55,
    "init_value": 1.0,
    "end_value": 0.1,
    "peak_value": 1.0,
    "value": 1.0,
    "transition_steps": 5,
    "decay_steps": 5,
    "warmup_steps": 2,
    "decay_rate": 0.5,
    "power": 2.0,
    "drop": 0.5,
    "steps_per_drop": 3,
    "base_lr": 0.1,
    "max_lr": 1.0,
    "batch_size": 8,
    "initial": 8,
    "growth": 2.0,
    "max_batch_size": 64,
    "every": 3,
    "max_consecutive_errors": 3,
    "milestones": [2, 4],
    "steps_per_epoch": 3,
    "schedule": jdl.constant_schedule(0.1),
    "schedules": [jdl.constant_schedule(0.1)] * 2,
    "boundaries": [3],
    "cosine_kwargs": [{"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 1, "decay_steps": 4}],
    "step_size_fn": jdl.constant_schedule(0.1),
    "inner": jdl.sgd(0.1),
    "opt": jdl.sgd(0.1),
    "optimizer": jdl.sgd(0.1),
    "fast_optimizer": jdl.sgd(0.1),
    "adv_optimizer": jdl.sgd(0.1),
    "every_k_schedule": 2,
    "mask": {"w": True, "b": False},
    "transforms": {"a": jdl.sgd(0.1), "b": jdl.adam(0.1)},
    "param_labels": {"w": "a", "b": "b"},
    "inner_factory": jdl.adam,
    "scale": 1.0,
    "mode": "fan_in",
    "distribution": "normal",
    "k": 2,
    "freqs": [0.25, 0.75],
    "momentum": 0.9,
    "b1": 0.9,
    "b2": 0.999,
}
INIT_SHAPES = {"initializers.bias_from_marginals": (2,)}


# Arguments that keep optax's signature (default None) but must be given here, as the
# changelog says: None is fuzzed like any other mistyped value.
REQUIRED_DESPITE_DEFAULT = {(jdl.scale_by_learning_rate, "learning_rate")}


def _required(factory, param) -> bool:
    return param.default is param.empty or (factory, param.name) in REQUIRED_DESPITE_DEFAULT


def base_kwargs(factory) -> dict:
    kwargs = {}
    for param in inspect.signature(factory).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if _required(factory, param):
            kwargs[param.name] = REQUIRED[param.name]
    return kwargs


def _finite(tree) -> bool:
    leaves = [np.asarray(x) for x in jax.tree.leaves(tree)]
    return all(np.all(np.isfinite(x)) for x in leaves if np.issubdtype(x.dtype, np.number))


def exercise(name: str, built) -> None:
    """Run what a factory built; raise AssertionError on non-finite results."""
    if name == "inject_hyperparams":
        built = built(learning_rate=0.1)
    if isinstance(built, jdl.MultiSteps):
        built = built.gradient_transformation()
    if isinstance(built, jdl.GradientTransformation):
        tx = jdl.chain(built)
        # lookahead's params are the (fast, slow) pair; its gradients are the fast ones'.
        lookahead = name == "lookahead"
        params = optax.LookaheadParams.init_synced(PARAMS) if lookahead else PARAMS
        state = tx.init(params)
        for _ in range(2):
            grads = jax.tree.map(lambda p: 0.5 * p + 0.1, params.fast if lookahead else params)
            updates, state = tx.update(grads, state, params, value=jnp.asarray(1.0))
            params = jdl.apply_updates(params, updates)
        assert _finite(params), "non-finite parameters after two steps"
    elif name.startswith("initializers."):
        values = built(jax.random.key(0), INIT_SHAPES.get(name, (8, 4)))
        assert _finite(values), "non-finite initial values"
    elif name.startswith(("minimize", "least_squares", "gradient_check")):
        assert _finite(getattr(built, "x", built)), "non-finite result"
    elif name in batch_size.__all__:
        sizes = [built(epoch) for epoch in range(4)]
        assert all(isinstance(s, int) and s > 0 for s in sizes), f"batch sizes {sizes}"
    else:  # a schedule
        # Eagerly: tests/test_schedule_boundaries.py checks that compiled code agrees.
        values = [built(t) for t in range(8)] + [built(jnp.arange(8))]
        assert _finite(values), "non-finite schedule values"


# --------------------------------------------------------------------------
# The inputs
# --------------------------------------------------------------------------

NUMBER_INPUTS = {
    "None": None,
    "string": "0.1",
    "bool": True,
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "negative": -1.0,
    "zero": 0,
    "decay 1.0": 1.0,
    "decay 1.5": 1.5,
}
# A bool argument takes only bools: numbers and strings ("no" is truthy) raise.
BOOL_INPUTS = {
    "None": None,
    "number": 1,
    "number 0": 0,
    "float number": 1.0,
    "numpy int": np.int64(1),
    "string": "yes",
    "string no": "no",
    "string False": "False",
    "empty string": "",
}


def _is_number_slot(param, base) -> bool:
    value = base.get(param.name, param.default)
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    annotation = str(param.annotation)
    containers = ("Mapping", "Sequence", "Iterable", "dict", "list", "tuple")
    return (
        value is None
        and ("float" in annotation or "int" in annotation)
        and not any(c in annotation for c in containers)
    )


def cases(factory):
    """(argument, label, value) for every mistyped input of every argument."""
    base = base_kwargs(factory)
    for param in inspect.signature(factory).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        value = base.get(param.name, param.default)
        if isinstance(value, bool):
            inputs = BOOL_INPUTS
        elif _is_number_slot(param, base):
            inputs = NUMBER_INPUTS
        elif value is not None:
            inputs = {"None": None}
        else:
            continue
        for label, bad in inputs.items():
            if label == "None" and param.default is None and not _required(factory, param):
                continue  # None is the documented default
            if (factory, param.name) in FROM_A_RESUMED_COUNT and label.startswith("decay"):
                continue  # legal, for a state resumed at that count: see LEGAL_ON_PURPOSE
            yield param.name, label, bad


# Arguments whose positive values are documented for a state resumed at a later step
# count (fine-tuning), so two steps from a fresh state do not exercise them.
FROM_A_RESUMED_COUNT = {(jdl.adafactor, "decay_offset")}


def _names_it(message: str, argument: str, label: str, value) -> bool:
    if argument not in message:
        return False
    if label in ("nan", "inf", "-inf"):
        return "must be finite" in message and repr(value) in message
    return repr(value) in message or str(value) in message


def outcome(name: str, argument: str, label: str, bad) -> str | None:
    """None when the input is handled; else what went wrong."""
    factory = FACTORIES[name]
    kwargs = {**base_kwargs(factory), argument: bad}
    try:
        built = factory(**kwargs)
    except (ValueError, TypeError) as error:
        if _names_it(str(error), argument, label, bad):
            return None
        return f"{type(error).__name__} not naming {argument}={bad!r}: {str(error)[:160]}"
    except Exception as error:  # noqa: BLE001 -- any other error is the finding
        return f"{type(error).__name__} at construction: {str(error)[:160]}"
    try:
        exercise(name, built)
    except Exception as error:  # noqa: BLE001
        return f"accepted, then {type(error).__name__}: {str(error)[:160]}"
    return None


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_every_mistyped_input_works_or_raises_naming_argument_and_value(name):
    factory = FACTORIES[name]
    exercise(name, factory(**base_kwargs(factory)))  # the valid call works
    failures = []
    for argument, label, bad in cases(factory):
        problem = outcome(name, argument, label, bad)
        if problem:
            failures.append(f"{argument} <- {label} ({bad!r}): {problem}")
    assert not failures, f"{name}:\n" + "\n".join(failures)


# --------------------------------------------------------------------------
# What optax and torch accept on purpose stays legal
# --------------------------------------------------------------------------


def _trace_running_sum():
    # trace(decay=1.0) is a running sum of the gradients (optax accepts it on purpose).
    tx = jdl.trace(1.0)
    grads = [jnp.asarray([1.0, -2.0]), jnp.asarray([0.5, 0.5]), jnp.asarray([2.0, 1.0])]
    state = tx.init(grads[0])
    outputs = []
    for g in grads:
        update, state = tx.update(g, state)
        outputs.append(np.asarray(update))
    np.testing.assert_allclose(outputs, np.cumsum(np.asarray(grads), axis=0))


def _exponential_decay_rate_zero():
    # decay_rate=0: the initial value up to transition_begin, 0 after (torch's
    # ExponentialLR(gamma=0) with transition_steps=1).
    schedule = jdl.exponential_decay(0.1, 1, 0.0, transition_begin=2)
    values = [float(schedule(t)) for t in range(5)]
    assert values == pytest.approx([0.1, 0.1, 0.1, 0.0, 0.0])


def _adafactor_decay_offset_from_its_step():
    # optax: "for fine-tuning, one may set this to the starting step number of the fine
    # tuning phase": from that count on, the steps equal a fresh adafactor's.
    offset = 3
    shifted, fresh = jdl.adafactor(0.1, decay_offset=offset), jdl.adafactor(0.1)
    shifted_state = optax.tree_utils.tree_set(
        shifted.init(PARAMS), count=jnp.asarray(offset, jnp.int32)
    )
    fresh_state = fresh.init(PARAMS)
    grads = jax.tree.map(lambda p: 0.5 * p + 0.1, PARAMS)
    for _ in range(2):
        want, fresh_state = fresh.update(grads, fresh_state, PARAMS)
        got, shifted_state = shifted.update(grads, shifted_state, PARAMS)
        jax.tree.map(np.testing.assert_allclose, got, want)


LEGAL_ON_PURPOSE = {
    "adafactor(decay_offset=3) from step 3": _adafactor_decay_offset_from_its_step,
    "trace(decay=1.0)": _trace_running_sum,
    "exponential_decay(decay_rate=0.0)": _exponential_decay_rate_zero,
}


@pytest.mark.parametrize("case", sorted(LEGAL_ON_PURPOSE))
def test_what_optax_and_torch_accept_on_purpose_stays_legal(case):
    LEGAL_ON_PURPOSE[case]()
