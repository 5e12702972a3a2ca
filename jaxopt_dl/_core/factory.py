"""The one way every block and optimizer is built.

:func:`block` turns a function that builds a transform into the public factory:
its arguments are bound (defaults filled in) and checked on entry -- every argument
annotated ``bool`` must be a bool, ``learning_rate`` must be given unless its default
is ``None``, and each ``checks`` entry runs -- then the function builds the transform
and the factory attaches its :class:`~jaxopt_dl._core.description.Description`. The
same decorator builds the blocks that delegate to optax (``signature_of=``): optax's
signature, numbers and state, the block's own docstring. With ``optimizer=True`` the result is a
public optimizer: it carries its name, and its ``update`` names the first path where
the gradients and the params differ.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping, Optional

import jax.numpy as jnp
import optax

from jaxopt_dl._core import description as desc_lib
from jaxopt_dl._core import validation

Checks = Mapping[str, Callable[[str, Any], None]]


def _is_bool_annotation(annotation: Any) -> bool:
    return annotation is bool or annotation == "bool"


def check_arguments(signature: inspect.Signature, arguments: dict, checks: Optional[Checks]):
    """Run the checks every factory shares, then ``checks``, on bound ``arguments``.

    Args:
      signature: the factory's signature.
      arguments: the bound arguments, defaults applied.
      checks: ``{argument: check(name, value)}``.
    """
    for name, parameter in signature.parameters.items():
        if name not in arguments:
            continue
        if _is_bool_annotation(parameter.annotation):
            validation.check_bool(name, arguments[name])
        if name == "learning_rate" and name not in (checks or {}):
            if parameter.default is None:
                validation.check_learning_rate(arguments[name], name, allow_none=True)
            else:
                validation.check_given_learning_rate(name, arguments[name])
    for name, check in (checks or {}).items():
        check(name, arguments[name])


def schedule_count(state: Any) -> Any:
    """The count of the (only) ``ScaleByScheduleState`` in a state (optax's aliases).

    Args:
      state: an optimizer state.
    """
    found = []

    def visit(node):
        if isinstance(node, optax.ScaleByScheduleState):
            found.append(node)
            return
        for kid in desc_lib.children(node):
            visit(kid)

    visit(state)
    if len(found) != 1:
        raise ValueError(
            "the learning-rate schedule's count is ambiguous: the state holds "
            f"{len(found)} ScaleByScheduleState entries"
        )
    return found[0].count


def rate_of(learning_rate: Any, count: Optional[Callable[[Any], Any]] = None) -> Optional[Callable]:
    """``state -> rate`` for a learning rate given as a number, an array or a schedule.

    Args:
      learning_rate: the argument as given (None: no rate).
      count: ``state -> the count the schedule is read at``; by default the count of
        the state's only ``ScaleByScheduleState`` (optax's aliases).
    """
    if learning_rate is None:
        return None
    if not callable(learning_rate):
        return lambda state: jnp.asarray(learning_rate)
    count = count or schedule_count
    return lambda state: jnp.asarray(learning_rate(count(state)))


def _header(doc: Optional[str], body: Callable) -> str:
    """``doc`` (the block's own), with ``body``'s ``Args:`` section added if it has none."""
    doc = inspect.cleandoc(doc or body.__doc__ or "")
    if "Args:" in doc.splitlines():
        return doc
    lines = inspect.cleandoc(body.__doc__ or "").splitlines()
    if "Args:" not in lines:
        return doc
    start = lines.index("Args:")
    end = start + 1
    while end < len(lines) and (not lines[end] or lines[end][0].isspace()):
        end += 1
    return doc + "\n\n" + "\n".join(lines[start:end]).rstrip()


def accepted_keywords(update: Callable) -> "frozenset[str] | None":
    """The keyword names ``update`` accepts beyond ``(updates, state, params)``; None: any.

    Args:
      update: an update function.
    """
    try:
        parameters = list(inspect.signature(update).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters[3:] if p.kind is not p.VAR_POSITIONAL)


def _check_same_parameters(body: Callable, reference: Callable) -> None:
    """Raise ``TypeError`` unless ``body`` has ``reference``'s parameters exactly."""

    def shape(function):
        return [
            (p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()
        ]

    if shape(body) != shape(reference):
        raise TypeError(
            f"{body.__qualname__} must have the parameters of {reference.__qualname__}: "
            f"{shape(body)} vs {shape(reference)}"
        )


def _as_optimizer(transform: Any, description: desc_lib.Description) -> Any:
    """``transform`` whose ``update`` names the first path where gradients and params differ.

    The check runs when traced (structure and shapes are static), so jit and vmap over
    hyperparameters are unaffected.
    """
    inner = optax.with_extra_args_support(transform)
    accepts = accepted_keywords(inner.update)

    def update_fn(updates, state, params=None, **extra_args):
        if params is not None:
            validation.check_tree_matches(updates, params, "params")
        if accepts is not None:
            extra_args = {key: extra_args[key] for key in accepts & extra_args.keys()}
        return inner.update(updates, state, params, **extra_args)

    update_fn.description = description
    return optax.GradientTransformationExtraArgs(inner.init, update_fn)


def block(
    kind: Optional[str] = None,
    *,
    kernel: Optional[str] = None,
    checks: Optional[Checks] = None,
    rate: Optional[Callable[[dict], Optional[Callable]]] = None,
    rate_scale: Optional[Callable[[dict], Optional[Callable]]] = None,
    optimizer: bool = False,
    tree_check: bool = True,
    composite: bool = False,
    doc: Optional[str] = None,
    signature_of: Optional[Callable] = None,
) -> Callable[[Callable], Callable]:
    """Decorate a function that builds a transform: the public factory of a block.

    Args:
      kind: the description's kind (default: the function's name).
      kernel: the fused-kernel part that computes the block, or None.
      checks: ``{argument: check(name, value)}`` run on entry, after the shared checks.
      rate: ``arguments -> (state -> rate)`` (or None): the learning rate the block
        applies. For an optimizer without one, the rate is read from the built
        transform's description, else from the ``learning_rate`` argument.
      rate_scale: ``arguments -> (state -> multiplier)`` (a plateau scale), or None.
      optimizer: a public optimizer (named, trees checked); its description is the
        built transform's, named and with the optimizer's arguments.
      tree_check: with ``optimizer``, check that the gradients match the params (off
        for optimizers whose params are not shaped like the gradients).
      composite: keep the built transform's description (children, rate) and add the
        arguments, the kind and the kernel to it, instead of describing a leaf.
      doc: the docstring (default: the function's own).
      signature_of: the optax function the block delegates to: the block shows its
        signature (annotations included) and must have its parameters (names, kinds,
        defaults), checked when the block is defined.

    Returns:
      ``decorate(body) -> factory`` with ``body``'s signature.
    """

    def decorate(body: Callable) -> Callable:
        name = body.__name__
        if signature_of is not None:
            _check_same_parameters(body, signature_of)
        signature = inspect.signature(signature_of or body)  # annotations: optax's

        @functools.wraps(body)
        def build(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            check_arguments(signature, arguments, checks)
            transform = body(*args, **kwargs)
            built = desc_lib.describe(transform)
            own_rate = rate(arguments) if rate is not None else None
            own_scale = rate_scale(arguments) if rate_scale is not None else None
            if optimizer or composite:
                if own_rate is None:
                    own_rate = built.rate
                if own_rate is None and optimizer and "learning_rate" in arguments:
                    own_rate = rate_of(arguments["learning_rate"])
                description = built.replace(
                    hyperparams=arguments,
                    rate=own_rate,
                    rate_scale=own_scale or built.rate_scale,
                    kernel=kernel,
                    name=name if optimizer else built.name,
                    kind=kind or (built.kind if optimizer else name),
                )
            else:
                description = desc_lib.Description(
                    kind or name,
                    arguments,
                    rate=own_rate,
                    rate_scale=own_scale,
                    kernel=kernel,
                )
            if optimizer and tree_check:
                return _as_optimizer(transform, description)
            return desc_lib.attach(transform, description)

        build.__doc__ = _header(doc, body) if doc is not None else body.__doc__
        if signature_of is not None:
            build.__doc__ = _header(build.__doc__, signature_of)
            build.__wrapped__ = signature_of  # inspect.signature shows optax's
        build.__module__ = body.__module__
        return build

    return decorate
