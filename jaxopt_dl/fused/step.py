"""The fused step: ``tx.update`` plus ``apply_updates`` as one pass over memory on CPU.

An optimizer built by a jaxopt_dl alias carries its name and arguments
(``_core.metadata(tx)``). For the aliases with a kernel (``adam``, ``adamw``, ``sgd``
with momentum) and float32 parameters, :func:`apply_gradients` reads the state's
optax structure (``ScaleByAdamState``/``TraceState``, then ``EmptyState`` or
``ScaleByScheduleState``), evaluates the hyperparameters at the step's count, runs the
kernel over every leaf and returns the new parameters and a state of the same
structure. Anything else takes the plain path, ``tx.update`` then ``apply_updates``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from jaxopt_dl import _core, optimizers
from jaxopt_dl.fused import _kernel


class _Rule(NamedTuple):
    """How one alias maps onto a kernel.

    Attributes:
      kernel: the kernel's name.
      moment_state: the optax state class holding the moments.
      moments: the moment fields of that class, in the kernel's order.
      fixed: arguments the kernel implements only at these values.
      scalars: ``(hyperparams, count, rate) -> list`` of the kernel's scalars
        (``count``: the moment state's count after the step, ``None`` for states
        without one; ``rate``: the learning rate of this step).
    """

    kernel: str
    moment_state: type
    moments: tuple
    fixed: dict
    scalars: Callable


def _adam_scalars(hp: dict, count: jax.Array, rate: jax.Array) -> list:
    """Adam's kernel scalars at the new ``count`` (the formulas of ``scale_by_adam``)."""
    b1, b2 = hp["b1"], hp["b2"]
    rc1 = rc2 = 1.0
    if hp.get("bias_correction", True):  # the reciprocals XLA multiplies the moments by
        one = jnp.ones([], jnp.float32)
        rc1, rc2 = (_core.tree_bias_correction(one, b, count) for b in (b1, b2))
    return [
        b1,
        1 - b1,
        b2,
        1 - b2,
        rc1,
        rc2,
        hp["eps"],
        hp["eps_root"],
        -rate,
        hp.get("weight_decay", 0.0),
        _kernel.as_bf16_factor(b1),
        _kernel.as_bf16_factor(b2),
    ]


def _momentum_scalars(hp: dict, count: Optional[jax.Array], rate: jax.Array) -> list:
    """Heavy-ball momentum's kernel scalars (``optax.trace``)."""
    del count
    beta = hp["momentum"]
    return [beta, -rate, 1.0 if hp["nesterov"] else 0.0, _kernel.as_bf16_factor(beta)]


_ADAM = dict(
    kernel="adam", moment_state=optax.ScaleByAdamState, moments=("mu", "nu"), scalars=_adam_scalars
)
RULES = {
    "adam": _Rule(fixed={"nesterov": False, "rounding": "nearest"}, **_ADAM),
    "adamw": _Rule(fixed={"nesterov": False, "mask": None, "rounding": "nearest"}, **_ADAM),
    "sgd": _Rule(
        kernel="momentum",
        moment_state=optax.TraceState,
        moments=("trace",),
        fixed={},
        scalars=_momentum_scalars,
    ),
}


@functools.lru_cache(maxsize=None)
def _defaults(name: str) -> dict:
    """The alias's arguments with their defaults (metadata may hold only those given)."""
    return {
        k: p.default
        for k, p in inspect.signature(getattr(optimizers, name)).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _plan(tx: Any) -> Optional[tuple[_Rule, dict]]:
    """The kernel rule and full hyperparameters for ``tx``, or None for the plain path."""
    info = _core.metadata(tx)
    rule = RULES.get(info.get("optimizer"))
    if rule is None:
        return None
    hp = {**_defaults(info["optimizer"]), **info.get("hyperparams", {})}
    if info["optimizer"] == "sgd" and hp.get("momentum") is None:
        return None
    if any(hp.get(k) is not v for k, v in rule.fixed.items()):
        return None
    if callable(hp.get("weight_decay")):  # a decay schedule: the plain path evaluates it
        return None
    return rule, hp


def _split_state(state: Any, rule: _Rule) -> Optional[tuple[int, Optional[int]]]:
    """Positions of the moment state and the schedule state in ``state``, or None.

    The state must be a tuple holding exactly one ``rule.moment_state``, at most one
    ``ScaleByScheduleState`` and otherwise ``EmptyState``s (optax's structure for the
    aliases with a kernel).
    """
    if not isinstance(state, tuple):
        return None
    moment, schedule = [], []
    for i, part in enumerate(state):
        if isinstance(part, rule.moment_state):
            moment.append(i)
        elif isinstance(part, optax.ScaleByScheduleState):
            schedule.append(i)
        elif not isinstance(part, optax.EmptyState):
            return None
    if len(moment) != 1 or len(schedule) > 1:
        return None
    return moment[0], schedule[0] if schedule else None


def _like(x, p, dtypes=(jnp.float32,)) -> bool:
    """``x`` has the shape of the parameter ``p`` and one of the kernel's ``dtypes``."""
    return jnp.shape(x) == jnp.shape(p) and jnp.result_type(x) in dtypes


def fusable(tx: Any, opt_state: Any, params: Any) -> bool:
    """Whether :func:`apply_gradients` runs ``tx``'s step through the fused kernel here.

    Args:
      tx: the optimizer.
      opt_state: its state.
      params: the parameters.

    Returns:
      True when the kernel is available in the program being traced, ``tx`` is an alias
      with a kernel, the state has optax's structure for it and every parameter is
      float32 (moments float32 or bfloat16).
    """
    return _fused_parts(tx, opt_state, params) is not None


def _fused_parts(tx, opt_state, params):
    plan = _plan(tx)
    if plan is None or not _kernel.kernel_available():
        return None
    rule, hp = plan
    positions = _split_state(opt_state, rule)
    if positions is None:
        return None
    moment_state = opt_state[positions[0]]
    p_leaves, treedef = jax.tree.flatten(params)
    try:
        m_leaves = [treedef.flatten_up_to(getattr(moment_state, f)) for f in rule.moments]
    except (ValueError, TypeError):
        return None
    moment_dtypes = (jnp.float32, jnp.bfloat16)
    if not p_leaves or not all(
        _like(p, p) and all(_like(m, p, moment_dtypes) for m in ms)
        for p, *ms in zip(p_leaves, *m_leaves)
    ):
        return None
    if callable(hp["learning_rate"]) != (positions[1] is not None):
        return None
    return rule, hp, positions, treedef, p_leaves, m_leaves


def apply_gradients(
    tx: Any, grads: Any, opt_state: Any, params: Any, **extra_args: Any
) -> tuple[Any, Any]:
    """One optimizer step, returning the new parameters and optimizer state.

    The same numbers as ``updates, opt_state = tx.update(grads, opt_state, params)``
    followed by ``params = optax.apply_updates(params, updates)``: the moments are
    bitwise equal, the parameters equal up to the rounding of one fused multiply-add.
    On CPU, for ``jdl.adam``, ``jdl.adamw`` and ``jdl.sgd`` with momentum and float32
    parameters, the whole step is one pass over memory through a compiled kernel
    (updating the buffers in place when they are donated to ``jax.jit``); everywhere
    else it is exactly those two plain calls. The state keeps optax's structure either
    way, so checkpoints do not depend on the path.

    Args:
      tx: the optimizer (any optax ``GradientTransformation``).
      grads: the gradients, a tree like ``params``.
      opt_state: ``tx``'s state.
      params: the current parameters.
      **extra_args: passed to ``tx.update`` on the plain path (e.g. ``value=loss`` for
        a plateau schedule).

    Returns:
      ``(new_params, new_opt_state)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_dl as jdl
      >>> tx = jdl.adam(1e-3)
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> step = jax.jit(jdl.fused.apply_gradients, static_argnums=0, donate_argnums=(2, 3))
      >>> params, state = step(tx, {"w": jnp.full(3, 0.5)}, state, params)
    """
    parts = _fused_parts(tx, opt_state, params)
    if parts is not None:
        rule, hp, (at_moment, at_schedule), treedef, p_leaves, m_leaves = parts
        try:
            g_leaves = treedef.flatten_up_to(grads)
        except (ValueError, TypeError):
            g_leaves = None
        if g_leaves is not None and all(_like(g, p) for p, g in zip(p_leaves, g_leaves)):
            return _fused_step(
                rule, hp, opt_state, at_moment, at_schedule, treedef, p_leaves, g_leaves, m_leaves
            )
    updates, opt_state = tx.update(grads, opt_state, params, **extra_args)
    return _core.apply_updates(params, updates), opt_state


def _fused_step(rule, hp, opt_state, at_moment, at_schedule, treedef, p_leaves, g_leaves, m_leaves):
    moment_state = opt_state[at_moment]
    count = moment_state.count if "count" in moment_state._fields else None
    new_count = None if count is None else _core.safe_increment(count)
    schedule_count = None if at_schedule is None else opt_state[at_schedule].count
    rate = _core.evaluate(hp["learning_rate"], schedule_count)
    scalars = _kernel.scalar_vector(rule.scalars(hp, new_count, rate))
    results = _kernel.call(
        rule.kernel, scalars, [(p, g, *ms) for p, g, *ms in zip(p_leaves, g_leaves, *m_leaves)]
    )
    new_params = treedef.unflatten([r[0] for r in results])
    fields = {f: treedef.unflatten([r[1 + k] for r in results]) for k, f in enumerate(rule.moments)}
    if new_count is not None:
        fields["count"] = new_count
    new_state = list(opt_state)
    new_state[at_moment] = moment_state._replace(**fields)
    if at_schedule is not None:
        new_state[at_schedule] = optax.ScaleByScheduleState(
            count=_core.safe_increment(schedule_count)
        )
    return new_params, tuple(new_state)
