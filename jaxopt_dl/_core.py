"""The one place every transform leans on.

Types (optax's own, so jaxopt_dl and optax compose both ways), ``chain``,
``apply_updates``, the saturating step counter, hyperparameter validation,
gradient-tree checks, and the tree math (moments, bias correction, norms) that
every transform uses, so that each formula is written once.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import weakref
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_dl import _precision

GradientTransformation = optax.GradientTransformation
"""optax's ``(init, update)`` pair -- the same type, so jaxopt_dl and optax compose both ways.

``init(params) -> state``; ``update(updates, state, params=None) -> (updates, state)``.
"""
GradientTransformationExtraArgs = optax.GradientTransformationExtraArgs
"""optax's transform whose ``update`` also takes keyword arguments (e.g. ``value=loss``)."""
EmptyState = optax.EmptyState
"""optax's state of a stateless transform (an empty NamedTuple)."""
OptState = optax.OptState
Params = optax.Params
Updates = optax.Updates
Schedule = Callable[[jax.typing.ArrayLike], jax.typing.ArrayLike]
"""A function ``step -> value`` (jit- and vmap-compatible), e.g. a learning-rate schedule."""
ScalarOrSchedule = Union[float, jax.Array, Schedule]
"""A hyperparameter given as a number, an array (possibly traced) or a :data:`Schedule`."""

__all__ = [
    "GradientTransformation",
    "GradientTransformationExtraArgs",
    "EmptyState",
    "ScalarOrSchedule",
    "Schedule",
    "chain",
    "identity",
    "apply_updates",
    "global_norm",
    "safe_increment",
]


# --------------------------------------------------------------------------
# Step counter
# --------------------------------------------------------------------------


def zero_count() -> jax.Array:
    """The initial value of every step counter: an int32 zero."""
    return jnp.zeros([], jnp.int32)


def safe_increment(count: jax.typing.ArrayLike) -> jax.Array:
    """``count + 1`` that saturates at the dtype's maximum instead of wrapping.

    Args:
      count: an integer (signed or unsigned) or real floating-point counter.

    Returns:
      ``count + 1``, or ``count`` when it already holds the dtype's maximum.

    Raises:
      ValueError: for a complex or boolean ``count``, which has no maximum.

    Example:
      >>> import jax.numpy as jnp
      >>> int(safe_increment(jnp.asarray(2**31 - 1, jnp.int32)))
      2147483647
    """
    count = jnp.asarray(count)
    if jnp.issubdtype(count.dtype, jnp.integer):
        max_value = jnp.iinfo(count.dtype).max
    elif jnp.issubdtype(count.dtype, jnp.floating):
        max_value = jnp.finfo(count.dtype).max
    else:
        raise ValueError(
            f"safe_increment needs an integer or real floating-point count, got dtype "
            f"{count.dtype} (count={count!r})"
        )
    top = jnp.asarray(max_value, count.dtype)
    return jnp.where(count < top, count + jnp.ones([], count.dtype), top)


# --------------------------------------------------------------------------
# Hyperparameter validation (Python numbers checked at build time; arrays and
# traced values pass through, so jit/vmap over hyperparameters keeps working)
# --------------------------------------------------------------------------


def is_python_number(value: Any) -> bool:
    """True for Python/NumPy scalars (checked at build time), False for arrays and tracers."""
    return isinstance(value, (numbers.Number, np.generic)) and not isinstance(
        value, (bool, np.bool_)
    )


def _is_array(value: Any) -> bool:
    """A JAX/NumPy array or a tracer: its value is not checked (it may be traced)."""
    return isinstance(value, (jax.Array, np.ndarray))


def _check_number(name: str, value: Any, allow_none: bool) -> bool:
    """Reject what cannot be a number; True when ``value`` is a Python number to range-check.

    ``None`` passes only with ``allow_none``; a schedule (callable) and an array or
    tracer pass unchecked; a bool, a string, a complex number or any other object
    raises ``TypeError`` naming the argument and the value.
    """
    if value is None:
        if allow_none:
            return False
        raise TypeError(f"{name} must be a number, got {name}=None")
    if callable(value):
        return False
    if _is_array(value):
        if not jnp.issubdtype(jnp.result_type(value), jnp.number):
            raise TypeError(f"{name} must be a numeric array, got {name}={value!r}")
        return False
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number, not a bool, got {name}={value!r}")
    if not is_python_number(value) or isinstance(value, (complex, np.complexfloating)):
        raise TypeError(f"{name} must be a real number, got {name}={value!r}")
    return True


def _check(
    name: str,
    value: Any,
    ok: Callable[[float], bool],
    requirement: str,
    allow_none: bool = False,
    allow_inf: bool = False,
) -> None:
    if not _check_number(name, value, allow_none):
        return
    as_float = float(value)
    if math.isnan(as_float) or (math.isinf(as_float) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {name}={value!r}")
    if not ok(as_float):
        raise ValueError(f"{name} must be {requirement}, got {name}={value!r}")


def check_nonnegative(name: str, value: Any, *, allow_none: bool = False) -> None:
    """Raise unless ``value`` is a finite number >= 0, an array or a schedule.

    Args:
      name: the argument's name, used in the message.
      value: the value given.
      allow_none: accept ``None`` (an optional argument left out).

    Raises:
      TypeError: ``None`` (unless allowed), a bool, a string or another non-number.
      ValueError: NaN or infinity ("must be finite"), or a negative number.
    """
    _check(name, value, lambda v: v >= 0, "non-negative", allow_none)


def check_positive(name: str, value: Any, *, allow_none: bool = False) -> None:
    """Raise unless ``value`` is a finite number > 0, an array or a schedule.

    Args:
      name: the argument's name, used in the message.
      value: the value given.
      allow_none: accept ``None`` (an optional argument left out).

    Raises:
      TypeError: ``None`` (unless allowed), a bool, a string or another non-number.
      ValueError: NaN or infinity ("must be finite"), or a number <= 0.
    """
    _check(name, value, lambda v: v > 0, "positive", allow_none)


def check_decay(name: str, value: Any, *, allow_none: bool = False) -> None:
    """Raise unless a decay/momentum ``value`` lies in [0, 1) (or is an array or a schedule).

    Args:
      name: the argument's name, used in the message.
      value: the value given.
      allow_none: accept ``None`` (an optional argument left out).

    Raises:
      TypeError: ``None`` (unless allowed), a bool, a string or another non-number.
      ValueError: NaN or infinity ("must be finite"), or a number outside [0, 1).
    """
    _check(name, value, lambda v: 0 <= v < 1, "in [0, 1)", allow_none)


def check_in_range(
    name: str, value: Any, low: float, high: float, *, allow_none: bool = False
) -> None:
    """Raise unless ``low <= value <= high`` (or ``value`` is an array or a schedule).

    Args:
      name: the argument's name, used in the message.
      value: the value given.
      low: the smallest value allowed.
      high: the largest value allowed (``math.inf`` for no bound: infinity itself is
        still rejected).
      allow_none: accept ``None`` (an optional argument left out).

    Raises:
      TypeError: ``None`` (unless allowed), a bool, a string or another non-number.
      ValueError: NaN or infinity ("must be finite"), or a number out of range.
    """
    _check(name, value, lambda v: low <= v <= high, f"in [{low}, {high}]", allow_none)


def check_finite(name: str, value: Any, *, allow_none: bool = False) -> None:
    """Raise unless ``value`` is a finite number (any sign), an array or a schedule.

    Args:
      name: the argument's name, used in the message.
      value: the value given.
      allow_none: accept ``None`` (an optional argument left out).

    Raises:
      TypeError: ``None`` (unless allowed), a bool, a string or another non-number.
      ValueError: NaN or infinity ("must be finite").
    """
    _check(name, value, lambda v: True, "finite", allow_none)


def check_int(name: str, value: Any, low: int = 0, *, allow_none: bool = False) -> None:
    """Raise unless ``value`` is a whole number ``>= low`` (a count: steps, patience, memory).

    Integral floats such as ``10.0`` pass, as in torch; arrays and tracers pass unchecked.

    Args:
      name: the argument's name, used in the message.
      value: the value given.
      low: the smallest value allowed.
      allow_none: accept ``None`` (an optional argument left out).

    Raises:
      TypeError: ``None`` (unless allowed), a bool, a string or another non-number.
      ValueError: NaN or infinity ("must be finite"), a fractional number, or a number
        below ``low``.
    """
    _check(
        name,
        value,
        lambda v: v == int(v) and v >= low,
        f"an integer >= {low}",
        allow_none,
    )


def check_bool(name: str, value: Any) -> None:
    """Raise ``TypeError`` unless ``value`` is a bool (or a boolean array, possibly traced).

    Numbers are rejected on purpose: ``nesterov=1`` or ``"yes"`` reads as a typo.

    Args:
      name: the argument's name, used in the message.
      value: the value given.
    """
    if isinstance(value, (bool, np.bool_)):
        return
    if _is_array(value) and jnp.result_type(value) == jnp.bool_:
        return
    raise TypeError(f"{name} must be a bool, got {name}={value!r}")


def check_learning_rate(
    value: Any, name: str = "learning_rate", *, allow_none: bool = False
) -> None:
    """A learning rate: a non-negative, finite number, a schedule, or an array.

    Args:
      value: the value given.
      name: the argument's name, used in the message.
      allow_none: accept ``None`` (an optimizer whose learning rate is optional).

    Raises:
      TypeError: ``None`` (unless allowed), a bool, a string or another non-number.
      ValueError: NaN or infinity ("must be finite"), or a negative number.
    """
    check_nonnegative(name, value, allow_none=allow_none)


def check_choice(name: str, value: Any, choices: tuple) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``.

    Args:
      name: the argument's name, used in the message.
      value: the value given.
      choices: the values allowed.
    """
    if isinstance(value, (bool, np.bool_)) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {name}={value!r}")


def check_given_learning_rate(name: str, value: Any) -> None:
    """A learning rate that must be given: ``None`` raises, else :func:`check_learning_rate`."""
    if value is None:
        raise ValueError(f"{name} must be a number, an array or a schedule, got {name}=None")
    check_learning_rate(value, name)


def check_nonnegative_finite(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless a Python-number ``value`` is finite and >= 0."""
    check_nonnegative(name, value)
    check_finite(name, value)


def check_transform(name: str, value: Any) -> None:
    """Raise ``TypeError`` unless ``value`` is a transform (callable ``init`` and ``update``).

    Args:
      name: the argument's name, used in the message.
      value: the value given.
    """
    if not (callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))):
        raise TypeError(
            f"{name} must be a GradientTransformation (init and update), got {name}={value!r}"
        )


def check_given(name: str, value: Any, what: str) -> None:
    """Raise ``TypeError`` when a required tree, mask or label argument is ``None``.

    Args:
      name: the argument's name, used in the message.
      value: the value given.
      what: what the argument must be, for the message (e.g. "a pytree or a function").
    """
    if value is None:
        raise TypeError(f"{name} must be {what}, got {name}=None")


def check_key(name: str, value: Any) -> None:
    """Raise unless ``value`` is a PRNG key, an int or an integer array (a seed).

    Traced values pass when their dtype is an integer or a key type.

    Args:
      name: the argument's name, used in the message.
      value: the value given.

    Raises:
      TypeError: a float, a bool, a string or another non-key ("must be finite" is
        added for NaN and infinity).
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a PRNG key or an integer seed, got {name}={value!r}")
    if isinstance(value, (int, np.integer)):
        return
    if _is_array(value):
        dtype = value.dtype
        if jnp.issubdtype(dtype, jnp.integer) or jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            return
    finite = "" if not isinstance(value, float) or math.isfinite(value) else " (must be finite)"
    raise TypeError(f"{name} must be a PRNG key or an integer seed{finite}, got {name}={value!r}")


# --------------------------------------------------------------------------
# Gradient-tree checks
# --------------------------------------------------------------------------


def _leaves_with_paths(tree: Any) -> list[tuple[str, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in flat]


def check_tree_matches(updates: Any, reference: Any, what: str = "optimizer state") -> None:
    """Raise ``ValueError`` when ``updates`` differs from ``reference`` in structure or shape.

    Runs at trace time only (structure and shapes are static), so it costs nothing
    in a jitted step. The message names the first differing path.

    Args:
      updates: the incoming gradient tree.
      reference: a tree with the expected structure and leaf shapes (a moment tree).
      what: how the reference is named in the message.
    """
    got = _leaves_with_paths(updates)
    want = _leaves_with_paths(reference)
    for (got_path, got_leaf), (want_path, want_leaf) in zip(got, want):
        if got_path != want_path:
            raise ValueError(
                f"gradient tree structure differs from the {what}: first differing path "
                f"is {got_path or '<root>'} in the gradients vs {want_path or '<root>'} "
                f"in the {what}"
            )
        got_shape = getattr(got_leaf, "shape", None)
        want_shape = getattr(want_leaf, "shape", None)
        if got_shape is not None and want_shape is not None and got_shape != want_shape:
            raise ValueError(
                f"gradient leaf shape differs from the {what} at path {got_path or '<root>'}: "
                f"{tuple(got_shape)} vs {tuple(want_shape)}"
            )
    if len(got) != len(want):
        longer, side = (got, "gradients") if len(got) > len(want) else (want, what)
        path = longer[min(len(got), len(want))][0]
        raise ValueError(
            f"gradient tree structure differs from the {what}: path {path or '<root>'} "
            f"exists only in the {side} ({len(got)} gradient leaves vs {len(want)})"
        )
    if jax.tree_util.tree_structure(updates) != jax.tree_util.tree_structure(reference):
        raise ValueError(
            f"gradient tree structure differs from the {what} (same paths, different node "
            f"types): {jax.tree_util.tree_structure(updates)} vs "
            f"{jax.tree_util.tree_structure(reference)}"
        )


# --------------------------------------------------------------------------
# Tree math: each formula written once
# --------------------------------------------------------------------------


def _map(fn: Callable, *trees: Any) -> Any:
    return jax.tree.map(
        lambda x, *rest: None if x is None else fn(x, *rest), *trees, is_leaf=lambda x: x is None
    )


tree_map = _map


def tree_zeros_like(tree: Any, dtype: Any = None) -> Any:
    """Zeros with each leaf's shape (and ``dtype`` when given, else the leaf's dtype)."""
    return _map(lambda x: jnp.zeros_like(x, dtype=dtype), tree)


def tree_second_moment_like(tree: Any, value: float = 0.0, dtype: Any = None) -> Any:
    """Initial second-moment accumulators: ``value`` with each leaf's shape.

    The dtype is ``dtype`` when given, else the leaf's -- except float16 leaves, whose
    squared gradients underflow fp16's range (g^2 < 6e-8 for |g| < 2.4e-4) and turn
    ``m / sqrt(v)`` into inf; their accumulators are float32 (optax keeps fp16 and
    returns NaN there).

    ``full_like`` (not ``full(x.shape)``) keeps each leaf's sharding, so under a mesh
    with explicit axes ``jax.jit(tx.init)`` shards the accumulators like their params.
    """

    def make(x):
        x_dtype = jnp.asarray(x).dtype
        leaf_dtype = dtype or (jnp.float32 if x_dtype == jnp.float16 else x_dtype)
        return jnp.full_like(x, value, dtype=leaf_dtype)

    return _map(make, tree)


def tree_cast(tree: Any, dtype: Any) -> Any:
    """Cast every leaf to ``dtype`` (no-op when ``dtype`` is None)."""
    if dtype is None:
        return tree
    return _map(lambda x: x.astype(dtype), tree)


def tree_cast_like(tree: Any, like: Any) -> Any:
    """Cast every leaf of ``tree`` to the dtype of the matching floating leaf of ``like``.

    Leaves matched with integer ones (Python ints in a gradient tree) stay as they are.
    """

    def cast(x, y):
        dtype = jnp.asarray(y).dtype
        return x.astype(dtype) if jnp.issubdtype(dtype, jnp.inexact) else x

    return _map(cast, tree, like)


def tree_scale(scalar: jax.typing.ArrayLike, tree: Any) -> Any:
    """``scalar * tree``, keeping each leaf's dtype."""
    return _map(lambda x: (scalar * x).astype(x.dtype), tree)


def tree_add_scaled(a: Any, scalar: jax.typing.ArrayLike, b: Any) -> Any:
    """Leafwise ``a + scalar * b``."""
    return _map(lambda x, y: x + scalar * y, a, b)


def tree_ema(updates: Any, moment: Any, decay: jax.typing.ArrayLike, order: int = 1) -> Any:
    """Exponential moving average of the ``order``-th power of ``updates``.

    .. math:: m \\leftarrow (1 - \\beta) g^{order} + \\beta m
    """
    return _map(lambda g, m: (1 - decay) * (widen_to(g, m) ** order) + decay * m, updates, moment)


def tree_ema_sq_norm(updates: Any, moment: Any, decay: jax.typing.ArrayLike) -> Any:
    """EMA of ``|g|^2`` (equal to ``g^2`` for real gradients, correct for complex)."""
    return _map(lambda g, m: (1 - decay) * abs_sq(widen_to(g, m)) + decay * m, updates, moment)


def widen_to(g: jax.Array, m: jax.Array) -> jax.Array:
    """Square the gradient in the accumulator's precision when that is wider (fp16 grads)."""
    g = jnp.asarray(g)
    return g.astype(jnp.promote_types(g.dtype, jnp.asarray(m).dtype))


def abs_sq(x: jax.Array) -> jax.Array:
    return (x.conj() * x).real if jnp.iscomplexobj(x) else x * x


def widen(x: jax.Array) -> jax.Array:
    """``x`` in at least float32, for norms of bf16/fp16 leaves.

    Squares of float16 values above 256 overflow and bf16 sums lose digits, so every
    norm is accumulated in ``promote_types(x.dtype, float32)``.
    """
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def tree_bias_correction(moment: Any, decay: jax.typing.ArrayLike, count: jax.Array) -> Any:
    """Divide an EMA by ``1 - decay**count`` (Kingma & Ba 2014, Alg. 1).

    ``1 - decay**count`` is computed in the count's float precision and cast to each
    leaf's dtype only for the division, so bf16 moments do not round it to zero.
    """
    correction = 1 - decay**count

    def divide(t):
        t = jnp.asarray(t)
        return t / (
            correction.astype(t.dtype) if jnp.issubdtype(t.dtype, jnp.inexact) else correction
        )

    return _map(divide, moment)


def tree_sum_sq(tree: Any) -> jax.Array:
    """Sum of squares of every entry of the tree, accumulated in at least float32."""
    leaves = [jnp.sum(abs_sq(widen(x))) for x in jax.tree.leaves(tree)]
    return sum(leaves, jnp.zeros([], jnp.float32))


def global_norm(updates: Any) -> jax.Array:
    """The L2 norm of a whole tree: ``sqrt(sum_i ||g_i||^2)``.

    Args:
      updates: a tree of arrays.
    """
    return jnp.sqrt(tree_sum_sq(updates))


def tree_all_finite(tree: Any) -> jax.Array:
    """One boolean: every entry of every leaf is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


# --------------------------------------------------------------------------
# Learning rates and schedules
# --------------------------------------------------------------------------


def evaluate(value: ScalarOrSchedule, count: jax.Array) -> jax.typing.ArrayLike:
    """A hyperparameter's value at step ``count``: call it if it is a schedule."""
    return value(count) if callable(value) else value


# --------------------------------------------------------------------------
# Metadata attached to a transform (what it is, for readers such as
# ``current_learning_rate`` and the fused step), without changing its type or state
# --------------------------------------------------------------------------

_METADATA: "weakref.WeakKeyDictionary[Callable, dict]" = weakref.WeakKeyDictionary()


def with_metadata(tx: Any, **info: Any) -> Any:
    """Attach ``info`` to ``tx`` (keyed by its ``update`` function) and return ``tx``.

    The transform stays optax's own type and its state is unchanged; the information
    lives beside it and is found again by :func:`metadata` for the same object (also
    after ``flax`` ``TrainState`` stores it). Later calls add to earlier ones.
    """
    _METADATA.setdefault(tx.update, {}).update(info)
    return tx


def metadata(tx: Any) -> dict:
    """What :func:`with_metadata` attached to ``tx`` (an empty dict when nothing was)."""
    update = getattr(tx, "update", None)
    try:
        return dict(_METADATA.get(update, {}))
    except TypeError:  # an update that cannot be weakly referenced carries no metadata
        return {}


# --------------------------------------------------------------------------
# optax as the implementation: one wrapper that validates on entry
# --------------------------------------------------------------------------


def _args_section(factory: Callable) -> str:
    """The ``Args:`` block of ``factory``'s docstring (Google style), or ``""``."""
    lines = inspect.cleandoc(factory.__doc__ or "").splitlines()
    if "Args:" not in lines:
        return ""
    start = lines.index("Args:")
    end = start + 1
    while end < len(lines) and (not lines[end] or lines[end][0].isspace()):
        end += 1
    return "\n".join(lines[start:end]).rstrip()


def from_optax(
    factory: Callable,
    checks: "dict[str, Callable[[str, Any], None]] | None" = None,
    attach: "Callable[[Any, dict], Any] | None" = None,
) -> Callable:
    """optax's ``factory`` -- its signature, numbers and state -- with arguments checked on entry.

    Every optax-named piece that jaxopt_dl does not extend is built through this one
    mechanism, so its numbers are optax's by construction. The module documents each
    with an attribute docstring; at run time ``help()`` shows optax's ``Args:``.

    Args:
      factory: the optax function (e.g. ``optax.scale``).
      checks: ``{argument name: check(name, value)}``, run on the bound arguments
        (defaults applied) before ``factory`` is called.
      attach: ``attach(transform, arguments) -> transform``, run on the result (e.g. to
        attach a learning-rate reader with :func:`with_metadata`).

    Returns:
      A function with ``factory``'s signature.
    """
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def build(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        for name, check in (checks or {}).items():
            check(name, bound.arguments[name])
        transform = factory(*args, **kwargs)
        return attach(transform, dict(bound.arguments)) if attach else transform

    checked = ", ".join(f"``{name}``" for name in checks or {}) or "nothing to check"
    header = (
        f"optax.{factory.__name__}: its arguments, numbers and state; checked on entry: {checked}."
    )
    build.__doc__ = "\n\n".join(part for part in (header, _args_section(factory)) if part)
    build.__module__ = inspect.currentframe().f_back.f_globals["__name__"]
    return build


# --------------------------------------------------------------------------
# Reading the learning rate a transform applies next (``current_learning_rate``)
# --------------------------------------------------------------------------

_RATE_SCALE_STATES: "dict[type, Callable[[Any], jax.Array]]" = {}


def register_rate_scale(
    state_type: type, read: Optional[Callable[[Any], jax.Array]] = None
) -> None:
    """Declare that a transform whose state is ``state_type`` multiplies the learning rate.

    Args:
      state_type: the state class (e.g. a reduce-on-plateau state).
      read: ``state -> multiplier``; by default ``state.scale``.
    """
    _RATE_SCALE_STATES[state_type] = read or (lambda state: state.scale)


register_rate_scale(optax.contrib.ReduceLROnPlateauState)


def _is_tree_leaf(node: Any) -> bool:
    return node is None or isinstance(node, (jax.Array, np.ndarray, np.generic, numbers.Number))


def children(node: Any) -> list:
    """The direct children of a pytree node (an empty list for a leaf).

    Args:
      node: any pytree node.
    """
    if _is_tree_leaf(node):
        return []
    kids, _ = jax.tree_util.tree_flatten(node, is_leaf=lambda x: x is not node)
    return kids


def state_rate_scale(state: Any) -> "jax.Array | None":
    """The product of the rate multipliers of every registered state in ``state``, or None.

    Args:
      state: an optimizer state (any pytree).
    """
    if type(state) in _RATE_SCALE_STATES:
        return jnp.asarray(_RATE_SCALE_STATES[type(state)](state))
    scales = [s for s in map(state_rate_scale, children(state)) if s is not None]
    return functools.reduce(jnp.multiply, scales) if scales else None


def times(rate: Any, factor: "jax.Array | None") -> Any:
    """``rate * factor`` for a rate or a ``{group: rate}`` dict (``factor=None``: unchanged).

    Args:
      rate: a scalar rate or ``{group: rate}``.
      factor: a multiplier, or None.
    """
    if factor is None:
        return rate
    if isinstance(rate, dict):
        return {group: value * factor for group, value in rate.items()}
    return rate * factor


def rate_reader(tx: Any) -> "Callable[[Any], Any] | None":
    """``state -> the learning rate the next update applies``, attached to ``tx``, or None.

    Args:
      tx: a transform.
    """
    return metadata(tx).get("rate_reader")


def with_rate_reader(tx: Any, read: "Callable[[Any], Any] | None") -> Any:
    """Attach ``read`` (``state -> rate``) to ``tx`` when there is one; return ``tx``.

    Args:
      tx: a transform.
      read: ``state -> rate``, or None (nothing attached).
    """
    return with_metadata(tx, rate_reader=read) if read is not None else tx


def _chain_reader(transforms: tuple) -> "Callable[[Any], Any] | None":
    """A chain applies its children's rates, times the multipliers of the others."""
    readers = [rate_reader(t) for t in transforms]
    if not any(readers):
        return None

    def read(state):
        rates, factor = [], None
        for reader, child_state in zip(readers, state):
            if reader is not None:
                rates.append(reader(child_state))
            elif (scale := state_rate_scale(child_state)) is not None:
                factor = scale if factor is None else factor * scale
        rate = functools.reduce(
            lambda a, b: times(b, a) if isinstance(b, dict) else times(a, b), rates
        )
        return times(rate, factor)

    return read


# --------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------


identity = from_optax(optax.identity)
"""Pass updates through unchanged: optax.identity, its state and numbers."""


def _accepted_keywords(update: Callable) -> "frozenset[str] | None":
    """The keyword names ``update`` accepts beyond ``(updates, state, params)``; None: any."""
    try:
        parameters = list(inspect.signature(update).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters[3:] if p.kind is not p.VAR_POSITIONAL)


def chain(*transforms: GradientTransformation) -> GradientTransformationExtraArgs:
    """Apply transforms in sequence; the state is the tuple of their states (as optax.chain).

    Any optax transform can appear in a jaxopt_dl chain and vice versa; extra keyword
    arguments to ``update`` (e.g. ``value=loss`` for reduce-on-plateau) reach the
    transforms that accept them, and only those: a transform whose ``update`` names
    its keywords (without ``**kwargs``) gets just the ones it names.

    Args:
      *transforms: the transforms, applied in order (jaxopt_dl's or optax's).

    Example:
      >>> import jaxopt_dl as jdl
      >>> tx = jdl.chain(jdl.clip_by_global_norm(1.0), jdl.scale_by_adam(), jdl.scale(-1e-3))
    """
    reader = _chain_reader(transforms)
    transforms = tuple(optax.with_extra_args_support(t) for t in transforms)
    accepts = tuple(_accepted_keywords(t.update) for t in transforms)

    def init_fn(params):
        return tuple(t.init(params) for t in transforms)

    def update_fn(updates, state, params=None, **extra_args):
        if len(state) != len(transforms):
            raise ValueError(
                f"chain has {len(transforms)} transforms but the state has {len(state)} entries"
            )
        new_state = []
        for t, s, names in zip(transforms, state, accepts):
            extra = extra_args
            if names is not None:
                extra = {key: extra_args[key] for key in names & extra_args.keys()}
            updates, s = t.update(updates, s, params, **extra)
            new_state.append(s)
        return updates, tuple(new_state)

    return with_rate_reader(GradientTransformationExtraArgs(init_fn, update_fn), reader)


def apply_updates(
    params: Params, updates: Updates, *, rounding: str = "nearest", key: Any = None
) -> Params:
    """``params + updates``, each result in its param's dtype (bf16/fp16 stay bf16/fp16).

    With ``rounding="stochastic"`` a bfloat16/float16 parameter is updated in float32
    and rounded up or down at random, unbiased (:func:`jaxopt_dl.stochastic_round`), so
    updates smaller than half the parameter's spacing still move it on average: low
    precision parameters train without a float32 master copy. The bits hash ``key`` and
    each leaf's index and element, so pass a new key (e.g. ``fold_in(key, step)``)
    every step. float32 parameters are added as with ``"nearest"``.

    Args:
      params: a tree of parameters.
      updates: a tree with the same structure and shapes.
      rounding: ``"nearest"`` (default; the ordinary cast) or ``"stochastic"``.
      key: a PRNG key or an integer seed (an int or an integer array); required for
        ``"stochastic"``.

    Returns:
      The updated parameters, each leaf in the dtype of its parameter.

    Raises:
      ValueError: naming the first path where the trees or leaf shapes differ (checked
        when traced, so it costs nothing in a jitted step); an unknown ``rounding``, or
        ``"stochastic"`` without a ``key``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_dl as jdl
      >>> w = jnp.ones(4096, jnp.bfloat16)
      >>> u = jnp.full(4096, 1e-3)  # below half of bfloat16's spacing at 1 (2**-8)
      >>> float(jnp.mean(jdl.apply_updates(w, u).astype(jnp.float32)))  # nearest: lost
      1.0
      >>> w2 = jdl.apply_updates(w, u, rounding="stochastic", key=jax.random.key(0))
      >>> round(float(jnp.mean(w2.astype(jnp.float32))), 3)
      1.001
    """
    _precision.check_rounding(rounding)
    check_tree_matches(updates, params, "params")
    if rounding == "nearest":
        return jax.tree.map(
            lambda p, u: None if p is None else jnp.asarray(p + u).astype(jnp.asarray(p).dtype),
            params,
            updates,
            is_leaf=lambda x: x is None,
        )
    if key is None:
        raise ValueError(
            "apply_updates(rounding='stochastic') needs key= (a PRNG key or an integer seed)"
        )
    words = _precision.key_words(key)
    sums = jax.tree.map(
        lambda p, u: None if p is None else widen(jnp.asarray(p)) + widen(jnp.asarray(u)),
        params,
        updates,
        is_leaf=lambda x: x is None,
    )
    return _precision.tree_round_to(sums, params, "stochastic", words)
