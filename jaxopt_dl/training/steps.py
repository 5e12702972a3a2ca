"""One optimization step and one evaluation step of a classifier (softmax cross-entropy).

A batch is ``(x, y)`` or ``(x, y, weights)``: inputs, integer labels and optional
per-example weights (0 masks an example out; curriculum samplers may weight examples).
The loss is the weighted mean ``sum_i w_i l_i / sum_i w_i`` of the per-example
cross-entropies ``l_i = -log softmax(f(x_i))_{y_i}``.

``train_step`` runs the model with ``train=True`` (batch statistics, updated running
averages, dropout with a fresh key every step), takes the gradient, and applies the
optimizer. It also

* feeds the loss to the optimizer as ``value=loss`` when the optimizer accepts extra
  arguments (``reduce_on_plateau`` needs it; every ``jdl.chain`` accepts it);
* accumulates gradients over ``grad_accum_steps`` equal micro-batches of the batch inside
  one compiled step (a ``lax.scan``): the update equals the one of the whole batch for a
  model without batch norm (with batch norm each micro-batch is normalized by its own
  statistics, as on separate devices); the step counter advances once;
* skips a step whose loss, gradient or update has a NaN/Inf: params, optimizer state, batch
  statistics and ``step`` stay bit-identical and the skip is counted in the state
  (``nonfinite_streak``, ``nonfinite_total``, ``nonfinite_leaf``). After
  ``max_consecutive_nonfinite`` skips in a row the state freezes (every later step is a
  no-op) so a host-side loop can stop at its next check without losing the last finite
  state — :func:`jaxopt_dl.training.fit` raises :class:`NonFiniteError` then.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from jaxopt_dl._core import apply_updates
from jaxopt_dl.diagnostics import summarize
from jaxopt_dl.training.state import TrainState
from jaxopt_dl.transforms.scaling import current_learning_rate

__all__ = [
    "cross_entropy",
    "train_step",
    "eval_step",
    "diagnostics_step",
    "train_step_fn",
    "split_batch",
]

Batch = tuple


def split_batch(batch: Batch) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(x, y)`` or ``(x, y, w)`` -> ``(x, y, w)`` with ``w`` float32 ones when absent."""
    if len(batch) == 2:
        x, y = batch
        return jnp.asarray(x), jnp.asarray(y), jnp.ones(jnp.shape(y)[:1], jnp.float32)
    if len(batch) == 3:
        x, y, w = batch
        return jnp.asarray(x), jnp.asarray(y), jnp.asarray(w, jnp.float32)
    raise ValueError(f"batch must be (x, y) or (x, y, weights), got a batch of length {len(batch)}")


def cross_entropy(
    logits: jax.Array, labels: jax.Array, weights: Optional[jax.Array] = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Weighted sums of the softmax cross-entropy and of the correct predictions.

    .. math:: L = \\sum_i w_i\\,(-\\log \\mathrm{softmax}(z_i)_{y_i}), \\quad
              C = \\sum_i w_i [\\arg\\max z_i = y_i], \\quad W = \\sum_i w_i

    Sums (not means) so that micro-batches and evaluation chunks combine exactly; the
    mean loss is ``L / W``, the accuracy ``C / W``.

    Args:
      logits: ``(batch, classes)``.
      labels: ``(batch,)`` integer classes.
      weights: ``(batch,)`` per-example weights (default ones).

    Returns:
      ``(L, C, W)``.

    Example:
      >>> import jax.numpy as jnp
      >>> L, C, W = cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 1]))
      >>> round(float(L / W), 4), float(C), float(W)  # log 4
      (1.3863, 1.0, 2.0)
    """
    if weights is None:
        weights = jnp.ones(labels.shape, jnp.float32)
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return (
        jnp.sum(weights * per_example),
        jnp.sum(weights * correct),
        jnp.sum(weights),
    )


def _forward(state: TrainState, params: Any, batch_stats: Any, x, train: bool, rng, collect=()):
    variables = {"params": params}
    mutable = list(collect)
    if batch_stats:
        variables["batch_stats"] = batch_stats
        if train:
            mutable.append("batch_stats")
    kwargs = {"rngs": {"dropout": rng}} if train else {}
    if mutable:
        logits, updated = state.apply_fn(variables, x, train=train, mutable=mutable, **kwargs)
    else:
        logits, updated = state.apply_fn(variables, x, train=train, **kwargs), {}
    return logits, dict(updated)


def _grads(state: TrainState, batch: Batch, grad_accum_steps: int, collect=()):
    """Gradient of the weighted mean loss, accumulated over micro-batches.

    Returns ``(grads, (loss_sum, correct_sum, weight_sum), batch_stats, collected)``.
    """
    x, y, w = split_batch(batch)
    k = grad_accum_steps
    if x.shape[0] % k:
        raise ValueError(
            f"the batch size ({x.shape[0]}) must be a multiple of grad_accum_steps, "
            f"got grad_accum_steps={k}"
        )

    def micro(batch_stats, xs, ys, ws, rng):
        def loss_fn(params):
            logits, updated = _forward(state, params, batch_stats, xs, True, rng, collect)
            sums = cross_entropy(logits, ys, ws)
            return sums[0], (sums, updated)

        grads, (sums, updated) = jax.grad(loss_fn, has_aux=True)(state.params)
        return grads, sums, updated

    rng = jax.random.fold_in(state.rng, state.step)
    if k == 1:
        grads, sums, updated = micro(state.batch_stats, x, y, w, rng)
        batch_stats = updated.get("batch_stats", state.batch_stats)
    else:
        shape = lambda a: a.reshape((k, a.shape[0] // k) + a.shape[1:])  # noqa: E731
        rngs = jax.random.split(rng, k)

        def body(carry, inputs):
            grad_sum, sums_acc, batch_stats = carry
            g, sums, updated = micro(batch_stats, *inputs)
            carry = (
                jax.tree.map(jnp.add, grad_sum, g),
                jax.tree.map(jnp.add, sums_acc, sums),
                updated.get("batch_stats", batch_stats),
            )
            return carry, None

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        init = (zeros, (jnp.zeros([]),) * 3, state.batch_stats)
        (grads, sums, batch_stats), _ = jax.lax.scan(
            body, init, (shape(x), shape(y), shape(w), rngs)
        )
        updated = {}
    total_weight = jnp.maximum(sums[2], jnp.finfo(jnp.float32).tiny)
    grads = jax.tree.map(lambda g: g / total_weight.astype(g.dtype), grads)
    return grads, sums, batch_stats, updated


def _learning_rate(opt_state: Any) -> Optional[jax.Array]:
    try:
        return jnp.asarray(current_learning_rate(opt_state), jnp.float32)
    except ValueError:
        return None


def _optimizer_update(state: TrainState, grads: Any, loss: jax.Array):
    tx = state.tx
    if isinstance(tx, optax.GradientTransformationExtraArgs):
        return tx.update(grads, state.opt_state, state.params, value=loss)
    return tx.update(grads, state.opt_state, state.params)


def train_step_fn(
    state: TrainState,
    batch: Batch,
    grad_accum_steps: int = 1,
    max_consecutive_nonfinite: Optional[int] = None,
) -> tuple[TrainState, dict]:
    """The un-jitted step behind :func:`train_step` (for ``lax.scan``/``vmap`` callers)."""
    grads, (loss_sum, correct, weight), batch_stats, _ = _grads(state, batch, grad_accum_steps)
    weight = jnp.maximum(weight, jnp.finfo(jnp.float32).tiny)
    loss = loss_sum / weight
    updates, opt_state = _optimizer_update(state, grads, loss)
    params = apply_updates(state.params, updates)

    # A leaf is bad when its gradient (or, e.g. under a NaN learning rate, its update) is.
    leaf_bad = jnp.stack([
        ~(jnp.all(jnp.isfinite(g)) & jnp.all(jnp.isfinite(u)))
        for g, u in zip(jax.tree.leaves(grads), jax.tree.leaves(updates))
    ])
    finite = jnp.isfinite(loss) & ~jnp.any(leaf_bad)
    halted = jnp.asarray(False)
    if max_consecutive_nonfinite is not None:
        halted = state.nonfinite_streak >= max_consecutive_nonfinite
    apply = finite & ~halted

    def pick(new, old):
        return jax.tree.map(lambda a, b: jnp.where(apply, a, b), new, old)

    bad_leaf = jnp.where(jnp.any(leaf_bad), jnp.argmax(leaf_bad), -1).astype(jnp.int32)
    skipped = ~finite & ~halted
    new_state = state.replace(
        step=jnp.where(apply, state.step + 1, state.step),
        params=pick(params, state.params),
        opt_state=pick(opt_state, state.opt_state),
        batch_stats=pick(batch_stats, state.batch_stats),
        nonfinite_streak=jnp.where(
            halted, state.nonfinite_streak, jnp.where(finite, 0, state.nonfinite_streak + 1)
        ).astype(jnp.int32),
        nonfinite_total=(state.nonfinite_total + skipped).astype(jnp.int32),
        nonfinite_leaf=jnp.where(skipped, bad_leaf, state.nonfinite_leaf).astype(jnp.int32),
    )
    metrics = {"loss": loss, "accuracy": correct / weight, "finite": finite}
    lr = _learning_rate(state.opt_state)
    if lr is not None:
        metrics["learning_rate"] = lr
    return new_state, metrics


train_step = jax.jit(
    train_step_fn, static_argnames=("grad_accum_steps", "max_consecutive_nonfinite")
)
train_step.__doc__ = """One jitted optimization step: ``(state, batch) -> (state, metrics)``.

    Args:
      state: a :class:`TrainState`.
      batch: ``(x, y)`` or ``(x, y, weights)``.
      grad_accum_steps: split the batch into this many equal micro-batches and average
        their gradients (static; the batch size must be a multiple of it).
      max_consecutive_nonfinite: freeze the state after this many non-finite steps in a
        row (static; ``None``: never freeze, only skip).

    Returns:
      ``(new_state, metrics)`` with ``metrics`` = ``{"loss", "accuracy", "finite"}`` of the
      batch (before the update) and ``"learning_rate"`` (the rate this step applied, when
      the optimizer state holds one; without a ``reduce_on_plateau`` scale).

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_dl as jdl
      >>> x, y = jnp.ones((4, 3)), jnp.array([0, 1, 0, 1])
      >>> state = jdl.training.create_train_state(
      ...     jdl.models.MLP(hidden=(4,), num_classes=2), jdl.sgd(0.1), jax.random.key(0), x)
      >>> state, metrics = jdl.training.train_step(state, (x, y))
      >>> int(state.step), sorted(metrics)
      (1, ['accuracy', 'finite', 'learning_rate', 'loss'])
    """


def eval_step_fn(state: TrainState, batch: Batch) -> dict:
    """The un-jitted :func:`eval_step`."""
    x, y, w = split_batch(batch)
    logits, _ = _forward(state, state.params, state.batch_stats, x, False, None)
    loss_sum, correct, weight = cross_entropy(logits, y, w)
    return {"loss_sum": loss_sum, "correct": correct, "weight": weight}


eval_step = jax.jit(eval_step_fn)
eval_step.__doc__ = """Weighted sums of loss and correct predictions with ``train=False``.

    Deterministic: batch norm uses the running averages, dropout is off.

    Returns:
      ``{"loss_sum", "correct", "weight"}``; mean loss ``loss_sum / weight``, accuracy
      ``correct / weight`` (sums, so that chunks of a large set combine exactly).
    """


@jax.jit
def diagnostics_step(state: TrainState, batch: Batch) -> dict:
    """Seed 002's debugging numbers for one batch, without changing the state.

    Gradient norms per layer, update/weight ratios of the update the optimizer would
    apply, NaN/Inf counts and the mean/std of every activation the model sows into
    ``"intermediates"`` (see :func:`jaxopt_dl.diagnostics.summarize`).

    Returns:
      A flat ``{name: scalar}`` dict.
    """
    grads, (loss_sum, _, weight), _, updated = _grads(state, batch, 1, collect=("intermediates",))
    updates, _ = _optimizer_update(state, grads, loss_sum / weight)
    return summarize(state.params, grads, updates, updated.get("intermediates"))
