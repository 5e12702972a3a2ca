"""What a transform is: a :class:`Description` that travels with it.

Every block and optimizer of jaxopt_dl attaches a description to its ``update``
function (``tx.update.description``): a function attribute travels with the transform
through ``flax``'s ``TrainState``, ``optax.chain``'s closure and any copy of the
``(init, update)`` pair, and the state stays optax's own. :func:`describe` reads it
back, and also reads optax's own composers (``optax.chain``,
``optax.multi_transform``, ``optax.masked``, ``optax.inject_hyperparams``,
``optax.MultiSteps``, ``optax.apply_if_finite``, ``optax.flatten``) from their
closures; anything else is ``Description("opaque")``.

:func:`leaf_blocks` walks a description together with a state and gives the leaf
blocks in the order they apply, each with its own state; :func:`replace_leaf_states`
puts new leaf states back into the whole state. :func:`read_rate` gives the learning
rate the next update applies.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib

__all__ = [
    "Description",
    "LeafBlock",
    "OPAQUE",
    "attach",
    "describe",
    "leaf_blocks",
    "replace_leaf_states",
    "read_rate",
]


@dataclasses.dataclass(frozen=True, eq=False)
class Description:
    """What a transform is, once, beside it.

    Attributes:
      kind: the block's kind: its factory's name for a block (``"scale_by_adam"``,
        ``"trace"``, ...), ``"chain"``, ``"masked"``, ``"multi_transform"``,
        ``"inject_hyperparams"``, ``"MultiSteps"``, ``"apply_if_finite"``,
        ``"flatten"``, ... or ``"opaque"`` for a transform nothing is known about.
      hyperparams: the factory's arguments as given (defaults filled in), values and
        dtypes unchanged (a schedule stays the callable).
      children: the descriptions of the transforms this one composes, in the order
        they apply.
      child_states: ``state -> tuple`` of the children's states (None without
        children).
      rebuild: ``(state, new child states) -> state`` (None without children).
      rate: ``state -> the learning rate the next update applies`` (a scalar, a
        ``{group: rate}`` dict, or None where this state applies none), or None when
        the block applies no learning rate.
      rate_scale: ``state -> multiplier`` of the learning rate (reduce-on-plateau), or
        None.
      kernel: the name of the fused-kernel part that computes this block, or None.
      name: the public optimizer's name (``"adam"``, ``"radam"``) when the transform
        is one, else None.
    """

    kind: str
    hyperparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    children: tuple = ()
    child_states: Optional[Callable[[Any], tuple]] = None
    rebuild: Optional[Callable[[Any, tuple], Any]] = None
    rate: Optional[Callable[[Any], Any]] = None
    rate_scale: Optional[Callable[[Any], Any]] = None
    kernel: Optional[str] = None
    name: Optional[str] = None

    def replace(self, **changes: Any) -> "Description":
        """A copy with ``changes`` (dataclass fields) applied.

        Args:
          **changes: new values of fields.
        """
        return dataclasses.replace(self, **changes)

    def spec(self) -> tuple:
        """``(kind, kernel, hyperparams, children's specs)``: what two descriptions share
        when they describe the same computation (rates and state readers left out)."""
        return (
            self.kind,
            self.kernel,
            tuple(sorted(self.hyperparams.items(), key=lambda kv: kv[0])),
            tuple(child.spec() for child in self.children),
        )


OPAQUE = Description("opaque")
"""The description of a transform nothing is known about."""


class LeafBlock(NamedTuple):
    """One leaf block met by :func:`leaf_blocks`.

    Attributes:
      description: the leaf's description (no children).
      state: the leaf's own state.
      path: ``((description, child index), ...)`` of the composites above the leaf,
        outermost first (a ``masked``, ``multi_transform`` or ``flatten`` above it
        says which parameters, in which layout, the leaf sees).
    """

    description: Description
    state: Any
    path: tuple


def attach(tx: Any, description: Description) -> Any:
    """``tx`` (same type, same ``init``, same state) whose ``update`` carries ``description``.

    ``update`` is a new function that calls ``tx.update`` (its signature and keywords
    unchanged), so the description of a shared function is never overwritten.

    Args:
      tx: a transform (``GradientTransformation`` or ``GradientTransformationExtraArgs``).
      description: what it is.
    """
    inner = tx.update

    @functools.wraps(inner)
    def update(*args, **kwargs):
        return inner(*args, **kwargs)

    update.description = description
    return type(tx)(tx.init, update)


# --------------------------------------------------------------------------
# Composite descriptions (jaxopt_dl's composers and optax's own build the same ones)
# --------------------------------------------------------------------------


def times(rate: Any, factor: Any) -> Any:
    """``rate * factor`` for a rate or a ``{group: rate}`` dict (``factor=None``: unchanged).

    Args:
      rate: a scalar rate or ``{group: rate}``.
      factor: a multiplier, or None.
    """
    if factor is None or rate is None:
        return rate
    if isinstance(rate, dict):
        return {group: value * factor for group, value in rate.items()}
    return rate * factor


def _product(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return times(b, a) if isinstance(b, dict) else times(a, b)


def _sequence_rate(children: tuple) -> "tuple[Optional[Callable], Optional[Callable]]":
    """``(rate, rate_scale)`` of blocks applied in sequence (a chain's children)."""
    rated = [c.rate is not None for c in children]
    scaled = [c.rate_scale is not None for c in children]
    if not any(rated) and not any(scaled):
        return None, None

    def factors(states):
        rate, scale = None, None
        for child, state in zip(children, states):
            if child.rate is not None:
                rate = _product(rate, child.rate(state))
            elif child.rate_scale is not None:
                scale = _product(scale, jnp.asarray(child.rate_scale(state)))
        return rate, scale

    if any(rated):
        return (lambda states: times(*factors(states))), None
    return None, (lambda states: factors(states)[1])


def sequence_description(children: tuple, kind: str = "chain", **hyperparams: Any) -> Description:
    """The description of ``children`` applied in sequence, state = tuple of theirs.

    Args:
      children: the children's descriptions.
      kind: the kind (``"chain"``).
      **hyperparams: hyperparameters to record.
    """
    children = tuple(children)
    rate, scale = _sequence_rate(children)
    return Description(
        kind,
        hyperparams,
        children,
        child_states=tuple,
        rebuild=lambda state, new: tuple(new),
        rate=None if rate is None else (lambda state: rate(tuple(state))),
        rate_scale=None if scale is None else (lambda state: scale(tuple(state))),
    )


def wrapper_description(
    kind: str, child: Description, field: Optional[str], **hyperparams: Any
) -> Description:
    """One child whose state is ``state.<field>`` (or the whole state for ``field=None``).

    The wrapper applies its child's learning rate and plateau scale.

    Args:
      kind: the wrapper's kind.
      child: the wrapped transform's description.
      field: the state field holding the child's state, or None (same state).
      **hyperparams: the wrapper's own arguments.
    """
    if field is None:
        get, put = (lambda state: (state,)), (lambda state, new: new[0])
    else:
        get = lambda state: (getattr(state, field),)  # noqa: E731
        put = lambda state, new: state._replace(**{field: new[0]})  # noqa: E731
    rate = None if child.rate is None else (lambda state: child.rate(get(state)[0]))
    scale = None
    if child.rate_scale is not None:
        scale = lambda state: child.rate_scale(get(state)[0])  # noqa: E731
    return Description(kind, hyperparams, (child,), get, put, rate, scale)


def partition_description(
    transforms: Mapping[Any, Description], param_labels: Any, kind: str = "multi_transform"
) -> Description:
    """A transform per label, state ``PartitionState(inner_states={label: MaskedState})``.

    The rate is ``{label: rate}`` over the labels whose transform applies one (the
    rate itself when only one does).

    Args:
      transforms: ``{label: description}``.
      param_labels: the labels tree or function (recorded as a hyperparameter).
      kind: the kind.
    """
    labels = tuple(transforms)
    children = tuple(transforms[label] for label in labels)

    def get(state):
        return tuple(state.inner_states[label].inner_state for label in labels)

    def put(state, new):
        inner = dict(state.inner_states)
        for label, child_state in zip(labels, new):
            inner[label] = inner[label]._replace(inner_state=child_state)
        return state._replace(inner_states=inner)

    rated = [(label, child) for label, child in zip(labels, children) if child.rate is not None]
    rate = None
    if rated:

        def rate(state):
            rates = {
                label: child.rate(state.inner_states[label].inner_state) for label, child in rated
            }
            return rates if len(rates) > 1 else next(iter(rates.values()))

    hyperparams = {"labels": labels, "param_labels": param_labels}
    return Description(kind, hyperparams, children, get, put, rate)


_INJECTED_STATES = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)


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
    """The product of the plateau multipliers found in ``state`` (None: there is none).

    A state is a plateau state when it is optax's ``ReduceLROnPlateauState`` or its
    class sets ``rate_scale_field`` (the field holding the multiplier).

    Args:
      state: an optimizer state (any pytree).
    """
    field = getattr(type(state), "rate_scale_field", None)
    if isinstance(state, optax.contrib.ReduceLROnPlateauState):
        field = "scale"
    if isinstance(field, str) and hasattr(state, field):
        return jnp.asarray(getattr(state, field))
    scales = [s for s in map(state_rate_scale, children(state)) if s is not None]
    return functools.reduce(jnp.multiply, scales) if scales else None


def inject_description(inner_factory: Callable, hyperparams: Mapping[str, Any]) -> Description:
    """``inject_hyperparams(inner_factory)(**hyperparams)``: the rate is in the state.

    The next update applies ``hyperparams_states["learning_rate"]``'s schedule at its
    count for an injected schedule, else the stored ``hyperparams["learning_rate"]``
    (what ``optax.tree_utils.tree_set`` changes), times the plateau scales of the
    inner state.

    Args:
      inner_factory: the wrapped factory.
      hyperparams: the arguments given.
    """
    schedule = hyperparams.get("learning_rate")

    def rate(state):
        if callable(schedule) and "learning_rate" in state.hyperparams_states:
            value = schedule(state.hyperparams_states["learning_rate"].count)
        elif "learning_rate" in state.hyperparams:
            value = state.hyperparams["learning_rate"]
        else:
            return None
        return times(jnp.asarray(value), state_rate_scale(state.inner_state))

    return Description(
        "inject_hyperparams",
        {"inner_factory": inner_factory, **hyperparams},
        rate=rate,
    )


# --------------------------------------------------------------------------
# Reading a transform's description
# --------------------------------------------------------------------------


def _closure(fn: Callable) -> dict:
    code = getattr(fn, "__code__", None)
    cells = getattr(fn, "__closure__", None) or ()
    if code is None:
        return {}
    return {name: cell.cell_contents for name, cell in zip(code.co_freevars, cells)}


def _describe_update(update: Callable) -> Description:
    """The description of the transform whose update function is ``update``."""
    found = getattr(update, "description", None)
    if isinstance(found, Description):
        return found
    owner = getattr(update, "__self__", None)
    if isinstance(owner, optax.MultiSteps):
        return _multi_steps(owner)
    module = getattr(update, "__module__", "") or ""
    qualname = getattr(update, "__qualname__", "")
    if not module.startswith("optax"):
        return OPAQUE
    env = _closure(update)
    if qualname == "with_extra_args_support.<locals>.update" and "tx" in env:
        return describe(env["tx"])
    if qualname == "chain.<locals>.update_fn" and "update_fns" in env:
        return sequence_description(tuple(_describe_update(f) for f in env["update_fns"]))
    if qualname == "partition.<locals>.update_fn" and "transforms" in env:
        transforms = {label: describe(t) for label, t in env["transforms"].items()}
        return partition_description(transforms, env.get("param_labels"))
    if qualname == "masked.<locals>.update_fn" and "inner" in env:
        return wrapper_description(
            "masked", describe(env["inner"]), "inner_state", mask=env["mask"]
        )
    if qualname == "apply_if_finite.<locals>.update" and "inner" in env:
        return wrapper_description(
            "apply_if_finite",
            describe(env["inner"]),
            "inner_state",
            max_consecutive_errors=env.get("max_consecutive_errors"),
        )
    if qualname == "flatten.<locals>.update_fn" and "inner" in env:
        return wrapper_description("flatten", describe(env["inner"]), None)
    if qualname.startswith("inject_hyperparams.") and "inner_factory" in env:
        schedules = {  # optax wraps each schedule; the user's function is schedule_fn
            name: getattr(value, "schedule_fn", value)
            for name, value in env.get("sched_hps", {}).items()
        }
        return inject_description(env["inner_factory"], {**env.get("other_hps", {}), **schedules})
    if qualname == "reduce_on_plateau.<locals>.update_fn":
        return Description("reduce_on_plateau", rate_scale=lambda state: state.scale)
    return OPAQUE


def _multi_steps(multi_steps: optax.MultiSteps) -> Description:
    return wrapper_description(
        "MultiSteps",
        describe(multi_steps._opt),
        "inner_opt_state",
        every_k_schedule=multi_steps._every_k_schedule,
    )


def describe(tx: Any) -> Description:
    """What ``tx`` is: its attached description, or one read from optax's composers.

    Args:
      tx: a transform (jaxopt_dl's or optax's, or any ``(init, update)`` pair), or an
        ``optax.MultiSteps`` object.

    Returns:
      A :class:`Description`, never None: ``Description("opaque")`` when nothing is
      known.

    Example:
      >>> import jaxopt_dl as jdl
      >>> d = jdl.describe(jdl.adam(1e-3))
      >>> d.name, [c.kernel for c in d.children]
      ('adam', ['adam', 'learning_rate'])
    """
    if isinstance(tx, optax.MultiSteps):
        return _multi_steps(tx)
    update = getattr(tx, "update", None)
    if update is None:
        return OPAQUE
    return _describe_update(update)


# --------------------------------------------------------------------------
# Walking a description with its state
# --------------------------------------------------------------------------


def leaf_blocks(description: Description, state: Any) -> list:
    """The leaf blocks under ``description`` in the order they apply, with their states.

    A leaf is a description without children (a block, or an opaque transform).

    Args:
      description: from :func:`describe`.
      state: the transform's state.

    Returns:
      A list of :class:`LeafBlock`.
    """
    found: list = []

    def walk(desc, node, path):
        if not desc.children:
            found.append(LeafBlock(desc, node, path))
            return
        for index, (child, child_state) in enumerate(
            zip(desc.children, desc.child_states(node), strict=True)
        ):
            walk(child, child_state, path + ((desc, index),))

    walk(description, state, ())
    return found


def replace_leaf_states(description: Description, state: Any, new_states: Any) -> Any:
    """``state`` with the leaf states of :func:`leaf_blocks` replaced by ``new_states``.

    Args:
      description: from :func:`describe`.
      state: the transform's state.
      new_states: one new state per leaf block, in :func:`leaf_blocks`' order.

    Returns:
      The whole state, with the structure of ``state``.

    Raises:
      ValueError: ``new_states`` does not hold one state per leaf.
    """
    new_states = list(new_states)
    position = 0

    def build(desc, node):
        nonlocal position
        if not desc.children:
            if position >= len(new_states):
                raise ValueError(
                    f"new_states has {len(new_states)} states, fewer than the leaf blocks"
                )
            position += 1
            return new_states[position - 1]
        parts = desc.child_states(node)
        return desc.rebuild(node, tuple(build(c, s) for c, s in zip(desc.children, parts)))

    result = build(description, state)
    if position != len(new_states):
        raise ValueError(f"new_states has {len(new_states)} states for {position} leaf blocks")
    return result


def read_rate(description: Description, state: Any) -> Any:
    """The learning rate the next update applies, or None when none can be read.

    Args:
      description: from :func:`describe`.
      state: the transform's state.
    """
    return None if description.rate is None else description.rate(state)
