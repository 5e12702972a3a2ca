"""The fused step: ``tx.update`` plus ``apply_updates`` as one pass over memory on CPU.

The planner reads the optimizer's description (:func:`jaxopt_dl._core.describe`) and
its leaf blocks with their states, in the order they apply. A plan is

* a plain prefix of stateless blocks: at most one global-norm clip
  (``clip_by_global_norm``) and at most one L2 term (``add_l2``, or
  ``add_decayed_weights`` before the rule), each optionally masked;
* the rule: Adam (``scale_by_adam`` without Nesterov) or heavy-ball momentum
  (``trace``), with float32 or bfloat16 moments;
* for Adam, optionally decoupled weight decay (``add_decayed_weights`` after it);
* the learning rate (a number or a schedule);

composed by ``chain`` (jaxopt_dl's or optax's), ``masked`` and, around the whole,
``optax.flatten`` (then the kernel runs once over flat buffers). The prefix enters
the kernel as scalars (the clip's norm is read once, before the pass) and per-leaf
values (the masks), so the step stays one pass. Anything else takes the plain path,
``tx.update`` then ``apply_updates``.

Every scalar the kernel multiplies by is the value JAX's promotion gives the plain
step's product (a weakly typed decay rounded to a bfloat16 moment's dtype, a float32
or NumPy one kept at float32); where a product would be wider than float32 (a float64
hyperparameter under ``jax_enable_x64``) the step takes the plain path.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_dl import _core
from jaxopt_dl.fused import _kernel

_RULES = {
    "adam": ("adam", optax.ScaleByAdamState, ("mu", "nu")),
    "trace": ("momentum", optax.TraceState, ("trace",)),
}


class _Plan(NamedTuple):
    """What the kernel computes for one optimizer and state.

    Attributes:
      kernel: the kernel's name.
      moments: the moment fields of the rule's state, in the kernel's order.
      rule: the rule block's hyperparameters.
      rule_at: the rule block's position among the leaf blocks.
      rate_at: the learning-rate block's position.
      clip: the clip's ``max_norm``, or None.
      l2: ``(weight, masks)`` of the L2 term, or None.
      l2_first: the L2 term comes before the clip.
      decay: ``(weight_decay, masks)`` of the decoupled decay, or None.
      flat: the blocks run under ``optax.flatten`` (one flat vector).
    """

    kernel: str
    moments: tuple
    rule: dict
    rule_at: int
    rate_at: int
    clip: Any
    l2: Any
    l2_first: bool
    decay: Any
    flat: bool


def _stateless(state: Any) -> bool:
    """A state that a step leaves unchanged (a block without a schedule)."""
    if isinstance(state, optax.MaskedState):
        return _stateless(state.inner_state)
    return isinstance(state, (optax.EmptyState, tuple)) and not jax.tree.leaves(state)


def _masks(masks: list, view: Any) -> Optional[tuple]:
    """Per leaf of ``view``: True where every mask applies; None when one is not static."""
    p_leaves, treedef = jax.tree.flatten(view)
    applies = [True] * len(p_leaves)
    for mask in masks:
        tree = mask(view) if callable(mask) else mask
        try:
            leaves = treedef.flatten_up_to(tree)
        except (ValueError, TypeError):
            return None
        if not all(isinstance(m, (bool, np.bool_)) for m in leaves):
            return None
        applies = [a and bool(m) for a, m in zip(applies, leaves)]
    return tuple(applies)


def _plan(description: Any, opt_state: Any, view: Any) -> Optional[_Plan]:
    """The kernel plan for a description and its state over the parameters ``view``, or None."""
    try:
        blocks = _core.leaf_blocks(description, opt_state)
    except (ValueError, TypeError, AttributeError, KeyError):
        return None
    flat = False
    found: dict = {"clip": None, "l2": None, "decay": None}
    rule_at = rate_at = None
    l2_first = False
    for at, (block, state, path) in enumerate(blocks):
        masks = []
        for i, (composite, _) in enumerate(path):
            if composite.kind == "flatten" and i == 0:
                flat = True
            elif composite.kind == "masked":
                masks.append(composite.hyperparams["mask"])
            elif composite.children and composite.child_states is tuple:
                continue  # a chain (jaxopt_dl's, optax's, an optimizer's own)
            else:
                return None
        hp = dict(block.hyperparams)
        if hp.get("mask") is not None:
            masks.append(hp["mask"])
        part = block.kernel
        if part == "identity" and _stateless(state):
            continue
        if part == "learning_rate" and rule_at is not None and rate_at is None and not masks:
            rate_at = at
            continue
        if rate_at is not None:
            return None  # a block after the learning rate
        if part in _RULES and rule_at is None and not masks:
            if part == "adam" and hp.get("nesterov"):
                return None
            if hp.get("rounding", "nearest") != "nearest":
                return None  # stochastic rounding: the plain step hashes its bits
            rule_at = at
            continue
        if not _stateless(state):
            return None  # a scheduled weight, or a block with a state the kernel lacks
        if part == "clip_by_global_norm" and rule_at is None and found["clip"] is None:
            if masks:
                return None
            found["clip"] = hp["max_norm"]
            continue
        weight = hp.get("weight", hp.get("weight_decay"))
        if part in ("add_l2", "decoupled_decay") and not callable(weight):
            applies = _masks(masks, view)
            if applies is None:
                return None
            if rule_at is None and found["l2"] is None:
                found["l2"] = (weight, applies)
                l2_first = found["clip"] is None
                continue
            if part == "decoupled_decay" and found["decay"] is None:
                if rule_at is not None and blocks[rule_at].description.kernel == "adam":
                    found["decay"] = (weight, applies)
                    continue
        return None
    if rule_at is None or rate_at is None:
        return None
    kernel, _, moments = _RULES[blocks[rule_at].description.kernel]
    return _Plan(
        kernel,
        moments,
        dict(blocks[rule_at].description.hyperparams),
        rule_at,
        rate_at,
        found["clip"],
        found["l2"],
        l2_first and found["clip"] is not None,
        found["decay"],
        flat,
    )


def _flatten(tree: Any) -> jax.Array:
    """optax.flatten's layout: every leaf raveled, concatenated."""
    return jnp.concatenate([jnp.reshape(x, -1) for x in jax.tree.leaves(tree)])


def _unflatten(like: Any, flat: jax.Array) -> Any:
    leaves, treedef = jax.tree.flatten(like)
    ends = np.cumsum([np.size(x) for x in leaves])
    parts = jnp.split(flat, ends[:-1])
    return treedef.unflatten([jnp.reshape(x, jnp.shape(y)) for x, y in zip(parts, leaves)])


def _like(x, p, dtypes=(jnp.float32,)) -> bool:
    """``x`` has the shape of the parameter ``p`` and one of the kernel's ``dtypes``."""
    return jnp.shape(x) == jnp.shape(p) and jnp.result_type(x) in dtypes


def _parts(tx: Any, opt_state: Any, params: Any):
    """``(plan, leaf blocks, view of params)`` when the kernel runs this step, else None."""
    if not _kernel.kernel_available():
        return None
    p_leaves = jax.tree.leaves(params)
    if not p_leaves or not all(jnp.result_type(p) == jnp.float32 for p in p_leaves):
        return None
    description = _core.describe(tx)
    view = params
    if description.kind == "flatten":
        view = jax.ShapeDtypeStruct((sum(np.size(p) for p in p_leaves),), jnp.float32)
    plan = _plan(description, opt_state, view)
    if plan is None:
        return None
    blocks = _core.leaf_blocks(description, opt_state)
    moment_state = blocks[plan.rule_at].state
    if not isinstance(moment_state, _RULES[blocks[plan.rule_at].description.kernel][1]):
        return None
    v_leaves, treedef = jax.tree.flatten(view)
    try:
        m_leaves = [treedef.flatten_up_to(getattr(moment_state, f)) for f in plan.moments]
    except (ValueError, TypeError):
        return None
    moment_dtypes = (jnp.float32, jnp.bfloat16)
    if not all(all(_like(m, p, moment_dtypes) for m in ms) for p, *ms in zip(v_leaves, *m_leaves)):
        return None
    rate_state = blocks[plan.rate_at].state
    rate = blocks[plan.rate_at].description.hyperparams["learning_rate"]
    if callable(rate) != isinstance(rate_state, optax.ScaleByScheduleState):
        return None
    return plan, description, blocks, treedef, m_leaves


def fusable(tx: Any, opt_state: Any, params: Any) -> bool:
    """Whether :func:`apply_gradients` runs ``tx``'s step through the fused kernel here.

    Args:
      tx: the optimizer.
      opt_state: its state.
      params: the parameters.

    Returns:
      True when the kernel is available in the program being traced, ``tx``'s
      description is a plan the kernel computes (see the module's docstring), the state
      has optax's structure for it and every parameter is float32 (moments float32 or
      bfloat16).
    """
    return _parts(tx, opt_state, params) is not None


def _factor(value: Any, dtype: Any) -> Optional[jax.Array]:
    """``value`` as the plain step multiplies it into an array of ``dtype``.

    JAX converts it to the dtype its promotion gives the product (a Python number or a
    weakly typed array: ``dtype``; a NumPy or strongly typed scalar: its own dtype, at
    least ``dtype``); the kernel computes in float32, so that value is widened exactly.
    None when the product would be wider than float32.
    """
    dtype = jnp.result_type(value, dtype)
    if dtype not in (jnp.float32, jnp.bfloat16):
        return None
    return jnp.asarray(value, dtype).astype(jnp.float32)


def _rule_scalars(plan: _Plan, count: Optional[jax.Array], step: Any) -> list:
    """The rule's scalars after the prologue (``fused_update.cc`` gives the layout)."""
    hp, f32, bf16 = plan.rule, jnp.float32, jnp.bfloat16
    if plan.kernel == "adam":
        b1, b2 = hp["b1"], hp["b2"]
        rc1 = rc2 = 1.0
        if hp.get("bias_correction", True):  # the reciprocals XLA multiplies the moments by
            one = jnp.ones([], f32)
            rc1, rc2 = (_core.tree_bias_correction(one, b, count) for b in (b1, b2))
        return [
            _factor(b1, f32),
            _factor(b1, bf16),
            _factor(1 - b1, f32),
            _factor(b2, f32),
            _factor(b2, bf16),
            _factor(1 - b2, f32),
            rc1,
            rc2,
            _factor(hp["eps"], f32),
            _factor(hp["eps_root"], f32),
            step,
        ]
    beta = hp["decay"]
    return [
        _factor(beta, f32),
        _factor(beta, bf16),
        _factor(beta, f32),
        step,
        1.0 if hp["nesterov"] else 0.0,
    ]


def _per_leaf(term: Any, leaves: int) -> Optional[jax.Array]:
    """``[on, weight]`` per leaf (float32, ``(leaves, 2)``) of an L2 term or a decay."""
    if term is None:
        return jnp.zeros((leaves, 2), jnp.float32)
    weight = _factor(term[0], jnp.float32)
    if weight is None:
        return None
    on = np.asarray(term[1], np.float32)
    return jnp.stack([jnp.asarray(on), jnp.broadcast_to(weight, on.shape)], axis=1)


def apply_gradients(
    tx: Any,
    grads: Any,
    opt_state: Any,
    params: Any,
    *,
    where: Optional[jax.typing.ArrayLike] = None,
    **extra_args: Any,
) -> tuple[Any, Any]:
    """One optimizer step, returning the new parameters and optimizer state.

    The numbers of ``updates, opt_state = tx.update(grads, opt_state, params)``
    followed by ``params = optax.apply_updates(params, updates)``, and optax's state
    structure either way (checkpoints do not depend on the path). On CPU, for the
    plans the kernel computes (Adam, AdamW, heavy-ball momentum, after an optional
    global-norm clip and L2 term, masks and ``optax.flatten`` included; float32
    parameters, float32 or bfloat16 moments) the whole step is one pass over memory
    through a compiled kernel, updating the buffers in place when they are donated to
    ``jax.jit``; everywhere else it is exactly those two plain calls.

    The kernel rounds every ``a * b + c`` once (a fused multiply-add), as XLA's code
    for the plain step does on a CPU with FMA instructions when the step is compiled
    on its own: there the moments of Adam, AdamW and momentum are bitwise the plain
    step's. The parameters (and the moments after a clip or an L2 term) agree to a few
    roundings, because XLA's simplifier rewrites the plain step's divisions and folds
    the prefix into the moments differently in different programs: the plain step is
    not bitwise the same across programs either. Where XLA rounds a product and a sum
    separately (a CPU without FMA, or the step inside a larger program such as
    ``fit``'s ``lax.scan``) the two differ by that rounding, about 1e-7 relative per
    step.

    Differentiable: ``jax.grad``, ``jax.jvp`` and ``jax.vjp`` through it give the
    plain step's derivatives (the kernel's derivative rule is the same arithmetic in
    ``jax.numpy``).

    Args:
      tx: the optimizer (any optax ``GradientTransformation``).
      grads: the gradients, a tree like ``params``.
      opt_state: ``tx``'s state.
      params: the current parameters.
      where: a boolean scalar: ``False`` skips the step (parameters and state
        returned bit for bit, in place under ``jax.jit`` with donation); default
        ``None``: always step.
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
    parts = _parts(tx, opt_state, params)
    if parts is not None:
        result = _fused_step(parts, grads, opt_state, params, where)
        if result is not None:
            return result
    updates, new_state = tx.update(grads, opt_state, params, **extra_args)
    new_params = _core.apply_updates(params, updates)
    if where is None:
        return new_params, new_state
    return jax.tree.map(
        lambda new, old: jnp.where(where, new, old), (new_params, new_state), (params, opt_state)
    )


def _fused_step(parts, grads, opt_state, params, where):
    """The kernel's step, or None when a gradient or a scalar does not fit it."""
    plan, description, blocks, treedef, m_leaves = parts
    if plan.flat:
        if not all(_like(g, p) for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(params))):
            return None
        if jax.tree.structure(grads) != jax.tree.structure(params):
            return None
        p_leaves, g_leaves = [_flatten(params)], [_flatten(grads)]
    else:
        p_leaves = jax.tree.leaves(params)
        try:
            g_leaves = treedef.flatten_up_to(grads)
        except (ValueError, TypeError):
            return None
        if not all(_like(g, p) for p, g in zip(p_leaves, g_leaves)):
            return None
    moment_state = blocks[plan.rule_at].state
    count = moment_state.count if "count" in moment_state._fields else None
    new_count = None if count is None else _core.safe_increment(count)
    rate_state = blocks[plan.rate_at].state
    rate_hp = blocks[plan.rate_at].description.hyperparams
    rate, sign = rate_hp["learning_rate"], -1 if rate_hp.get("flip_sign", True) else 1
    if callable(rate):  # optax.scale_by_schedule: the value cast to the updates' dtype
        step = jnp.asarray(sign * rate(rate_state.count), jnp.float32)
    else:
        step = _factor(sign * rate, jnp.float32)
    apply = jnp.asarray(True) if where is None else jnp.asarray(where)
    prologue = [apply, 0.0, 1.0, 1.0, 1.0, 1.0 if plan.l2_first else 0.0]
    if plan.clip is not None:
        seen = g_leaves
        if plan.l2_first:
            weight, applies = plan.l2
            seen = [g + weight * p if on else g for g, p, on in zip(g_leaves, p_leaves, applies)]
        norm = _core.global_norm(seen)
        prologue[1:5] = [1.0, norm < plan.clip, norm, _factor(plan.clip, jnp.float32)]
    values = prologue + _rule_scalars(plan, new_count, step)
    per_leaf = [_per_leaf(plan.l2, len(p_leaves)), _per_leaf(plan.decay, len(p_leaves))]
    if any(v is None for v in values + per_leaf):
        return None  # a product wider than float32: the plain step's dtypes differ
    leaf_values = len(values)
    scalars = jnp.concatenate(
        [_kernel.scalar_vector(values), jnp.concatenate(per_leaf, axis=1).reshape(-1)]
    )
    results = _kernel.step(
        plan.kernel,
        scalars,
        [(p, g, *ms) for p, g, *ms in zip(p_leaves, g_leaves, *m_leaves)],
        leaf_values,
    )
    new_p = [r[0] for r in results]
    new_params = _unflatten(params, new_p[0]) if plan.flat else treedef.unflatten(new_p)
    fields = {f: treedef.unflatten([r[1 + k] for r in results]) for k, f in enumerate(plan.moments)}
    if new_count is not None:
        fields["count"] = jnp.where(apply, new_count, count)
    new_states = [b.state for b in blocks]
    new_states[plan.rule_at] = moment_state._replace(**fields)
    if isinstance(rate_state, optax.ScaleByScheduleState):
        new_states[plan.rate_at] = optax.ScaleByScheduleState(
            count=jnp.where(apply, _core.safe_increment(rate_state.count), rate_state.count)
        )
    return new_params, _core.replace_leaf_states(description, opt_state, new_states)
