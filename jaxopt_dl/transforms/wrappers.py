"""optax's wrappers, which take any GradientTransformation, ours included.

Each is optax's own function with optax's state; jaxopt_dl adds the checks on entry
(and an early check of ``MultiSteps``' ``every_k_schedule``). What each wraps is read
by :func:`jaxopt_dl.describe`, as for optax's own wrappers.

* ``apply_if_finite(inner, max_consecutive_errors)`` -- skip a step whose gradient has a
  NaN/Inf: params and the inner state stay bit-identical; state fields
  ``notfinite_count, last_finite, total_notfinite, inner_state``.
* ``masked(inner, mask)`` -- apply ``inner`` only where ``mask`` is True.
* ``multi_transform(transforms, param_labels)`` -- a different optimizer per label.
* ``MultiSteps(opt, every_k_schedule)`` -- gradient accumulation over k micro-batches.
* ``inject_hyperparams(factory)(**hparams)`` -- hyperparameters in the state, changeable
  between steps without recompiling (``optax.tree_utils.tree_set``).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterable, Mapping

import optax

from jaxopt_dl import _core

_TREE_OR_FUNCTION = "a pytree or a function of the params"


@_core.block(
    composite=True,
    checks={
        "inner": _core.check_transform,
        "mask": lambda name, value: _core.check_given(name, value, _TREE_OR_FUNCTION),
    },
    signature_of=optax.masked,
)
def masked(inner, mask, *, mask_compatible_extra_args=False):
    """Apply ``inner`` only where ``mask`` is True: optax.masked, its state and numbers.

    ``inner`` must be a transform and ``mask`` a pytree or a function (``TypeError``
    naming the argument otherwise).
    """
    return optax.masked(inner, mask, mask_compatible_extra_args=mask_compatible_extra_args)


@_core.block(
    composite=True,
    checks={"inner": _core.check_transform, "max_consecutive_errors": _core.check_int},
    signature_of=optax.apply_if_finite,
)
def apply_if_finite(inner, max_consecutive_errors):
    """Skip a step whose gradient has a NaN/Inf: optax.apply_if_finite.

    Params and the inner state stay bit-identical on a skipped step; the state is
    optax's ``ApplyIfFiniteState``. ``inner`` must be a transform and
    ``max_consecutive_errors`` a whole number >= 0.
    """
    return optax.apply_if_finite(inner, max_consecutive_errors)


def _check_transforms(name: str, value: Any) -> None:
    """``transforms`` must map each label to a transform."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict {{label: transform}}, got {name}={value!r}")
    for label, inner in value.items():
        _core.check_transform(f"{name}[{label!r}]", inner)


@_core.block(
    composite=True,
    checks={
        "transforms": _check_transforms,
        "param_labels": lambda name, value: _core.check_given(name, value, _TREE_OR_FUNCTION),
    },
    signature_of=optax.multi_transform,
)
def multi_transform(transforms, param_labels, *, mask_compatible_extra_args=False):
    """A different transform per parameter label: optax.multi_transform.

    :func:`jaxopt_dl.current_learning_rate` gives ``{group: rate}`` when several groups
    apply a rate. ``transforms`` must be a dict of transforms and ``param_labels`` a
    pytree or a function (``TypeError`` naming the argument otherwise).
    """
    return optax.multi_transform(
        transforms, param_labels, mask_compatible_extra_args=mask_compatible_extra_args
    )


def inject_hyperparams(
    inner_factory: Callable[..., Any],
    static_args: Any = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., optax.GradientTransformationExtraArgs]:
    """optax.inject_hyperparams: hyperparameters live in the state, changeable between steps.

    ``optax.tree_utils.tree_get(state, "learning_rate")`` finds one value and
    ``tree_set(state, learning_rate=x)`` takes effect on the next update. With the
    transform, :func:`jaxopt_dl.current_learning_rate` gives the next update's rate
    (an injected schedule evaluated at its count); from the state alone, the stored one.

    Args:
      inner_factory: a function that builds a transform from hyperparameters.
      static_args: names of arguments that are not injected (as optax).
      hyperparam_dtype: dtype of the injected values (as optax).

    Returns:
      A function taking ``inner_factory``'s arguments and returning the transform.

    Raises:
      TypeError: ``inner_factory`` is not callable, or ``static_args`` is neither a
        name nor a collection of names.
    """
    if not callable(inner_factory):
        raise TypeError(f"inner_factory must be callable, got inner_factory={inner_factory!r}")
    if not isinstance(static_args, str) and not (
        isinstance(static_args, Iterable) and all(isinstance(a, str) for a in static_args)
    ):
        raise TypeError(
            f"static_args must be a name or a collection of names, got static_args={static_args!r}"
        )
    wrapped = optax.inject_hyperparams(inner_factory, static_args, hyperparam_dtype)

    @functools.wraps(inner_factory)
    def build(*args, **kwargs):
        transform = wrapped(*args, **kwargs)
        try:
            arguments = inspect.signature(inner_factory).bind(*args, **kwargs).arguments
        except (TypeError, ValueError):
            return transform
        return _core.attach(transform, _core.inject_description(inner_factory, arguments))

    return build


class MultiSteps(optax.MultiSteps):
    """``optax.MultiSteps`` with ``every_k_schedule`` checked on entry.

    optax takes any non-int for a schedule, so ``every_k_schedule=2.5`` fails later,
    inside ``update``, with "'float' object is not callable"; here a number that is not
    a positive whole number raises ``ValueError`` naming ``every_k_schedule`` at once
    ("must be finite" for NaN and infinity; ``2.0`` is taken as 2), and an ``opt`` that
    is not a transform raises ``TypeError``.

    Args:
      opt: the inner transform, applied once every ``every_k_schedule`` calls.
      every_k_schedule: a positive int or a schedule ``step -> int``.
      *args: further arguments of ``optax.MultiSteps``.
      **kwargs: further keyword arguments of ``optax.MultiSteps``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> tx = jdl.MultiSteps(jdl.adam(1e-3), every_k_schedule=4).gradient_transformation()
    """

    def __init__(
        self, opt: optax.GradientTransformation, every_k_schedule: Any, *args: Any, **kwargs: Any
    ):
        _core.check_transform("opt", opt)
        if not callable(every_k_schedule):
            _core.check_int("every_k_schedule", every_k_schedule, low=1)
            every_k_schedule = int(every_k_schedule)
        super().__init__(opt, every_k_schedule, *args, **kwargs)


__all__ = ["MultiSteps", "apply_if_finite", "inject_hyperparams", "masked", "multi_transform"]
