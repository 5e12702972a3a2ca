"""Hyperparameter validation and gradient-tree checks.

Python numbers are checked when a transform is built; arrays and traced values pass
through, so jit/vmap over hyperparameters keeps working. Every message names the
argument and the value.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "is_python_number",
    "check_nonnegative",
    "check_positive",
    "check_decay",
    "check_in_range",
    "check_finite",
    "check_int",
    "check_bool",
    "check_learning_rate",
    "check_choice",
    "check_given_learning_rate",
    "check_transform",
    "check_given",
    "check_key",
    "check_tree_matches",
]


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
