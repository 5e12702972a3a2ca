"""One optimization step and one evaluation step of a model under a loss.

A batch is ``(x, y)`` or ``(x, y, weights)``: inputs, targets and optional per-example
weights (0 masks an example out; curriculum samplers may weight examples). The loss is
the weighted mean ``sum_i w_i l_i / sum_i w_i`` of the per-example losses
``l_i = loss(f(x_i), y_i)``; the default is the softmax cross-entropy
``l_i = -log softmax(f(x_i))_{y_i}`` of a classifier with integer labels. Metrics
(:func:`resolve_metrics`: ``"accuracy"``, ``"mse"``, ``"mae"`` or any
``fn(outputs, targets)``) are weighted means the same way; the accuracy is the default
metric of the cross-entropy.

``train_step`` runs the model with ``train=True`` (batch statistics, updated running
averages, dropout with a fresh key every step), takes the gradient, and applies the
optimizer through :meth:`TrainState.apply_gradients`. It also

* feeds the loss to the optimizer as ``value=loss`` when the optimizer accepts extra
  arguments (``reduce_on_plateau`` needs it; every ``jdl.chain`` accepts it);
* accumulates gradients over ``grad_accum_steps`` equal micro-batches of the batch inside
  one compiled step (a ``lax.scan``): the update equals the one of the whole batch for a
  model without batch norm (with batch norm each micro-batch is normalized by its own
  statistics, as on separate devices); the step counter advances once;
* skips a step whose loss or gradient has a NaN/Inf: params, optimizer state, batch
  statistics and ``step`` stay bit-identical (the optimizer step is told to skip, so the
  fused step still updates in place) and the skip is counted in the
  state (``nonfinite_streak``, ``nonfinite_total``, ``nonfinite_leaf``). After
  ``max_consecutive_nonfinite`` skips in a row the state freezes (every later step is a
  no-op) so a host-side loop can stop at its next check without losing the last finite
  state — the :class:`~jaxopt_dl.training.NonFiniteGuard` callback of
  :func:`~jaxopt_dl.training.fit` raises :class:`~jaxopt_dl.training.NonFiniteError` then.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import optax

from jaxopt_dl._core import widen
from jaxopt_dl.diagnostics import summarize
from jaxopt_dl.schedules.plateau import ReduceLROnPlateauState
from jaxopt_dl.training.state import TrainState, optimizer_update
from jaxopt_dl.transforms.scaling import current_learning_rate

__all__ = [
    "softmax_cross_entropy",
    "mean_squared_error",
    "mean_absolute_error",
    "resolve_loss",
    "resolve_metrics",
    "accuracy",
    "cross_entropy",
    "predict",
    "train_step",
    "eval_step",
    "diagnostics_step",
    "train_step_fn",
    "split_batch",
]

Batch = tuple
LossFn = Callable[[jax.Array, jax.Array], jax.Array]
Metrics = tuple  # ((name, fn(outputs, targets)), ...), hashable: a static argument


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy with integer labels, ``-log softmax(z_i)_{y_i}``.

    Args:
      logits: ``(batch, classes)``.
      labels: ``(batch,)`` integer classes.

    Returns:
      ``(batch,)`` losses.
    """
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def mean_squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example mean squared error, ``mean_j (f(x_i)_j - y_ij)^2`` over the output axes.

    Targets of shape ``(batch,)`` are compared with outputs of shape ``(batch, 1)``.

    Args:
      outputs: ``(batch, ...)`` model outputs.
      targets: targets of the same shape (or ``(batch,)`` for one output).

    Returns:
      ``(batch,)`` losses.
    """
    targets = jnp.reshape(targets, outputs.shape).astype(outputs.dtype)
    return jnp.mean(jnp.square(outputs - targets).reshape(outputs.shape[0], -1), axis=1)


def accuracy(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example accuracy ``[argmax f(x_i) = y_i]`` (1.0 or 0.0).

    Targets are integer classes ``(batch,)``, or one-hot / probability rows of the
    outputs' shape (then compared by their argmax).

    Args:
      outputs: ``(batch, classes)`` logits or scores.
      targets: ``(batch,)`` integer classes or ``(batch, classes)`` rows.

    Returns:
      ``(batch,)`` float32 values.
    """
    if jnp.ndim(targets) == jnp.ndim(outputs):
        targets = jnp.argmax(targets, -1)
    return (jnp.argmax(outputs, -1) == targets).astype(jnp.float32)


def mean_absolute_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example mean absolute error, ``mean_j |f(x_i)_j - y_ij|`` over the output axes.

    Args:
      outputs: ``(batch, ...)`` model outputs.
      targets: targets of the same shape (or ``(batch,)`` for one output).

    Returns:
      ``(batch,)`` values.
    """
    targets = jnp.reshape(targets, outputs.shape).astype(outputs.dtype)
    return jnp.mean(jnp.abs(outputs - targets).reshape(outputs.shape[0], -1), axis=1)


LOSSES = {"cross_entropy": softmax_cross_entropy, "mse": mean_squared_error}
METRICS = {"accuracy": accuracy, "mse": mean_squared_error, "mae": mean_absolute_error}


def resolve_loss(loss: Union[str, LossFn, None]) -> LossFn:
    """The loss function named by ``loss`` (a name of ``LOSSES`` or a callable).

    Args:
      loss: ``None`` or ``"cross_entropy"`` (softmax cross-entropy, the default),
        ``"mse"``, or any ``loss(outputs, targets)`` returning per-example losses
        ``(batch,)`` (trailing axes are averaged) or their mean (a scalar; example
        weights then only scale it).

    Returns:
      The function.

    Raises:
      ValueError: an unknown name.
      TypeError: neither a string nor a callable.
    """
    if loss is None:
        return softmax_cross_entropy
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)} or a function, got {loss!r}")
        return LOSSES[loss]
    if not callable(loss):
        raise TypeError(f"loss must be a name or a function loss(outputs, targets), got {loss!r}")
    return loss


def resolve_metrics(metrics: Optional[Sequence[Any]], loss_fn: LossFn) -> Metrics:
    """``((name, fn), ...)`` of the metrics named or given by ``metrics``.

    Args:
      metrics: ``None`` (the default: ``["accuracy"]`` for the cross-entropy loss,
        nothing for another loss), or a sequence of names of ``METRICS``
        (``"accuracy"``, ``"mse"``, ``"mae"``) and functions ``fn(outputs, targets)``
        returning per-example values ``(batch,)`` or their mean; a function is
        reported under its ``__name__``.
      loss_fn: the resolved loss.

    Returns:
      The pairs (hashable, in the given order).

    Raises:
      ValueError: an unknown name, a reserved or repeated name.
      TypeError: ``metrics`` is not a sequence, or an entry is neither a name nor a
        function.
    """
    if metrics is None:
        return (("accuracy", accuracy),) if loss_fn is softmax_cross_entropy else ()
    if isinstance(metrics, (str, bytes)) or not isinstance(metrics, Sequence):
        raise TypeError(f"metrics must be a list of names and functions, got metrics={metrics!r}")
    pairs = []
    for metric in metrics:
        if isinstance(metric, str):
            if metric not in METRICS:
                raise ValueError(
                    f"metrics names must be among {sorted(METRICS)} (or be functions), "
                    f"got {metric!r}"
                )
            pairs.append((metric, METRICS[metric]))
        elif callable(metric):
            pairs.append((getattr(metric, "__name__", type(metric).__name__), metric))
        else:
            raise TypeError(
                f"metrics entries must be names or functions fn(outputs, targets), got {metric!r}"
            )
    names = [name for name, _ in pairs]
    for name in names:
        if name in ("loss", "lr", "learning_rate", "weight", "finite") or name.startswith("val_"):
            raise ValueError(f"metrics must not be named {name!r} (a reserved key)")
        if names.count(name) > 1:
            raise ValueError(f"metrics names must be distinct, got {name!r} twice in {names}")
    return tuple(pairs)


def split_batch(batch: Batch) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(x, y)`` or ``(x, y, w)`` -> ``(x, y, w)`` with ``w`` float32 ones when absent.

    Args:
      batch: the batch.

    Returns:
      ``(x, y, w)`` arrays.
    """
    if len(batch) == 2:
        x, y = batch
        return jnp.asarray(x), jnp.asarray(y), jnp.ones(jnp.shape(y)[:1], jnp.float32)
    if len(batch) == 3:
        x, y, w = batch
        return jnp.asarray(x), jnp.asarray(y), jnp.asarray(w, jnp.float32)
    raise ValueError(f"batch must be (x, y) or (x, y, weights), got a batch of length {len(batch)}")


def _weighted_sum(values: jax.Array, weights: jax.Array) -> jax.Array:
    """``sum_i w_i v_i`` of per-example values (trailing axes averaged; a scalar is the
    mean of every example)."""
    # at least float32, float64 kept (a float64 gradient check needs the loss in float64)
    values = widen(jnp.asarray(values))
    values = jnp.broadcast_to(
        jnp.mean(values.reshape(values.shape[:1] + (-1,)), axis=1) if values.ndim else values,
        weights.shape,
    )
    return jnp.sum(weights * values)


def _sums(loss_fn: LossFn, outputs, targets, weights, metrics: Metrics = ()) -> dict:
    """Weighted sums of the loss and of every metric (keyed by the metric's name).

    Sums, not means, so that micro-batches and evaluation chunks combine exactly.
    Outputs of a lower precision (a bfloat16 model) are widened to float32 first.
    """
    outputs = widen(outputs)
    sums = {
        "loss_sum": _weighted_sum(loss_fn(outputs, targets), weights),
        "weight": jnp.sum(weights),
    }
    for name, fn in metrics:
        sums[name] = _weighted_sum(jax.lax.stop_gradient(fn(outputs, targets)), weights)
    return sums


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
    sums = _sums(softmax_cross_entropy, logits, labels, weights, (("accuracy", accuracy),))
    return sums["loss_sum"], sums["accuracy"], sums["weight"]


def _forward(
    state: TrainState, params: Any, batch_stats: Any, x, train: bool, rng, collect=()
) -> tuple[jax.Array, dict]:
    """``apply_fn`` on ``x``; returns the outputs and the updated mutable collections."""
    variables = {"params": params}
    mutable = list(collect)
    if batch_stats:
        variables["batch_stats"] = batch_stats
        if train:
            mutable.append("batch_stats")
    kwargs = {"rngs": {"dropout": rng}} if train else {}
    outputs, updated = state.apply_fn(variables, x, train=train, mutable=mutable, **kwargs)
    return outputs, dict(updated)


def predict(state: TrainState, x: jax.typing.ArrayLike) -> jax.Array:
    """The model's outputs on ``x`` with ``train=False`` (running averages, no dropout).

    Args:
      state: a :class:`TrainState`.
      x: a batch of inputs.

    Returns:
      The outputs (logits of a classifier).
    """
    return _forward(state, state.params, state.batch_stats, jnp.asarray(x), False, None)[0]


def _grads(
    state: TrainState,
    batch: Batch,
    grad_accum_steps: int,
    loss_fn: LossFn,
    collect=(),
    metrics: Metrics = (),
):
    """Gradient of the weighted mean loss, accumulated over micro-batches.

    Returns ``(grads, sums, batch_stats, collected)``.
    """
    x, y, w = split_batch(batch)
    k = grad_accum_steps
    if x.shape[0] % k:
        raise ValueError(
            f"the batch size ({x.shape[0]}) must be a multiple of grad_accum_steps, "
            f"got grad_accum_steps={k}"
        )

    def micro(batch_stats, xs, ys, ws, rng):
        def objective(params):
            outputs, updated = _forward(state, params, batch_stats, xs, True, rng, collect)
            sums = _sums(loss_fn, outputs, ys, ws, metrics)
            return sums["loss_sum"], (sums, updated)

        grads, (sums, updated) = jax.grad(objective, has_aux=True)(state.params)
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
        first = jax.eval_shape(lambda: micro(state.batch_stats, x[:1], y[:1], w[:1], rng)[1])
        init = (
            zeros,
            jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), first),
            state.batch_stats,
        )
        (grads, sums, batch_stats), _ = jax.lax.scan(
            body, init, (shape(x), shape(y), shape(w), rngs)
        )
        updated = {}
    total_weight = jnp.maximum(sums["weight"], jnp.finfo(jnp.float32).tiny)
    grads = jax.tree.map(lambda g: g / total_weight.astype(g.dtype), grads)
    return grads, sums, batch_stats, updated


def _means(sums: dict) -> dict:
    """``{"loss", <metric>...}`` from weighted sums."""
    weight = jnp.maximum(sums["weight"], jnp.finfo(jnp.float32).tiny)
    means = {"loss": sums["loss_sum"] / weight}
    for name, total in sums.items():
        if name not in ("loss_sum", "weight"):
            means[name] = total / weight
    return means


def _learning_rate(state: TrainState) -> Optional[Any]:
    """The rate the next step applies (a dict per group with several); ``None`` if unknown."""
    try:
        rate = current_learning_rate(state.opt_state, state.tx)
    except ValueError:
        return None
    return jax.tree.map(lambda r: jnp.asarray(r, jnp.float32), rate)


def _is_plateau(node: Any) -> bool:
    return isinstance(node, ReduceLROnPlateauState)


def keep_plateau_states(new_opt_state: Any, old_opt_state: Any) -> Any:
    """``new_opt_state`` with every ``reduce_on_plateau`` state taken from ``old_opt_state``.

    Args:
      new_opt_state: the optimizer state after an update.
      old_opt_state: the one before.

    Returns:
      The new state, its plateau states unchanged.
    """
    return jax.tree.map(
        lambda new, old: old if _is_plateau(new) else new,
        new_opt_state,
        old_opt_state,
        is_leaf=_is_plateau,
    )


def train_step_fn(
    state: TrainState,
    batch: Batch,
    grad_accum_steps: int = 1,
    max_consecutive_nonfinite: Optional[int] = None,
    loss: Union[str, LossFn, None] = None,
    feed_loss: bool = True,
    metrics: Optional[Metrics] = None,
) -> tuple[TrainState, dict]:
    """The un-jitted step behind :func:`train_step` (for ``lax.scan``/``vmap`` callers).

    Args:
      state: a :class:`TrainState`.
      batch: ``(x, y)`` or ``(x, y, weights)``.
      grad_accum_steps: micro-batches per step.
      max_consecutive_nonfinite: freeze the state after this many non-finite steps in a
        row (``None``: never freeze, only skip).
      loss: the loss (see :func:`resolve_loss`).
      feed_loss: let ``reduce_on_plateau`` states see the batch loss; ``False`` keeps
        them unchanged (they are fed elsewhere, e.g. by
        :class:`~jaxopt_dl.training.PlateauFeeder` once per epoch).
      metrics: the batch's metrics, as from :func:`resolve_metrics` (``None``: the
        default of the loss).

    Returns:
      ``(new_state, metrics)`` as :func:`train_step`.
    """
    loss_fn = resolve_loss(loss)
    metrics = resolve_metrics(None, loss_fn) if metrics is None else metrics
    grads, sums, batch_stats, _ = _grads(state, batch, grad_accum_steps, loss_fn, metrics=metrics)
    means = _means(sums)
    leaf_bad = jnp.stack([~jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
    finite = jnp.isfinite(means["loss"]) & ~jnp.any(leaf_bad)
    halted = jnp.asarray(False)
    if max_consecutive_nonfinite is not None:
        halted = state.nonfinite_streak >= max_consecutive_nonfinite
    apply = finite & ~halted
    # The skip is the step's own flag (no select over the old buffers): the fused
    # kernel then updates params and moments in place.
    new = state.apply_gradients(
        grads=grads,
        value=means["loss"],
        where=apply,
        batch_stats=jax.tree.map(
            lambda a, b: jnp.where(apply, a, b), batch_stats, state.batch_stats
        ),
    )
    if not feed_loss:
        new = new.replace(opt_state=keep_plateau_states(new.opt_state, state.opt_state))

    bad_leaf = jnp.where(jnp.any(leaf_bad), jnp.argmax(leaf_bad), -1).astype(jnp.int32)
    skipped = ~finite & ~halted
    new_state = new.replace(
        nonfinite_streak=jnp.where(
            halted, state.nonfinite_streak, jnp.where(finite, 0, state.nonfinite_streak + 1)
        ).astype(jnp.int32),
        nonfinite_total=(state.nonfinite_total + skipped).astype(jnp.int32),
        nonfinite_leaf=jnp.where(skipped, bad_leaf, state.nonfinite_leaf).astype(jnp.int32),
    )
    step_metrics = {**means, "finite": finite}
    lr = _learning_rate(state)
    if lr is not None:
        step_metrics["learning_rate"] = lr
    return new_state, step_metrics


STEP_STATIC = ("grad_accum_steps", "max_consecutive_nonfinite", "loss", "feed_loss", "metrics")
train_step = jax.jit(train_step_fn, static_argnames=STEP_STATIC)
train_step.__doc__ = """One jitted optimization step: ``(state, batch) -> (state, metrics)``.

    Args:
      state: a :class:`TrainState`.
      batch: ``(x, y)`` or ``(x, y, weights)``.
      grad_accum_steps: split the batch into this many equal micro-batches and average
        their gradients (static; the batch size must be a multiple of it).
      max_consecutive_nonfinite: freeze the state after this many non-finite steps in a
        row (static; ``None``: never freeze, only skip).
      loss: ``"cross_entropy"`` (default), ``"mse"`` or a function
        ``loss(outputs, targets)`` (static; see :func:`resolve_loss`).
      feed_loss: let ``reduce_on_plateau`` states see the batch loss (static).
      metrics: ``((name, fn), ...)`` from :func:`resolve_metrics` (static; ``None``:
        the accuracy for the cross-entropy, nothing for another loss).

    Returns:
      ``(new_state, metrics)`` with ``metrics`` = ``{"loss", "finite"}`` of the batch
      (before the update), one entry per metric (``"accuracy"`` by default for the
      cross-entropy), and
      ``"learning_rate"``: the rate this step applied, from
      :func:`jaxopt_dl.current_learning_rate` (a dict per parameter group when the
      optimizer has several; absent when the optimizer has none).

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_dl as jdl
      >>> x, y = jnp.ones((4, 3)), jnp.array([0, 1, 0, 1])
      >>> state = jdl.training.create_train_state(
      ...     jdl.models.MLP(hidden=(4,), num_classes=2), jdl.sgd(0.1), jax.random.key(0), x)
      >>> state, metrics = jdl.training.train_step(state, (x, y))
      >>> int(state.step), sorted(metrics)
      (1, ['accuracy', 'finite', 'learning_rate', 'loss'])
    """


def eval_step_fn(
    state: TrainState,
    batch: Batch,
    loss: Union[str, LossFn, None] = None,
    metrics: Optional[Metrics] = None,
) -> dict:
    """The un-jitted :func:`eval_step`.

    Args:
      state: a :class:`TrainState`.
      batch: ``(x, y)`` or ``(x, y, weights)``.
      loss: the loss (see :func:`resolve_loss`).
      metrics: ``((name, fn), ...)`` from :func:`resolve_metrics` (``None``: the
        default of the loss).

    Returns:
      The weighted sums of :func:`eval_step`.
    """
    x, y, w = split_batch(batch)
    loss_fn = resolve_loss(loss)
    metrics = resolve_metrics(None, loss_fn) if metrics is None else metrics
    return _sums(loss_fn, predict(state, x), y, w, metrics)


eval_step = jax.jit(eval_step_fn, static_argnames=("loss", "metrics"))
eval_step.__doc__ = """Weighted sums of the loss (and correct predictions) with ``train=False``.

    Deterministic: batch norm uses the running averages, dropout is off.

    Args:
      state: a :class:`TrainState`.
      batch: ``(x, y)`` or ``(x, y, weights)``.
      loss: the loss (static; see :func:`resolve_loss`).
      metrics: ``((name, fn), ...)`` from :func:`resolve_metrics` (static; ``None``:
        the accuracy for the cross-entropy, nothing for another loss).

    Returns:
      ``{"loss_sum", "weight"}`` and the weighted sum of every metric under its name
      (``"accuracy"`` by default for the cross-entropy); mean loss
      ``loss_sum / weight``, accuracy ``accuracy / weight`` (sums, so that chunks of a
      large set combine exactly).
    """


def diagnostics_step(
    state: TrainState, batch: Batch, loss: Union[str, LossFn, None] = None
) -> dict:
    """The debugging numbers for one batch, without changing the state.

    Gradient norms per layer, update/weight ratios of the update the optimizer would
    apply, NaN/Inf counts and the mean/std of every activation the model sows into
    ``"intermediates"`` (see :func:`jaxopt_dl.diagnostics.summarize`).

    Args:
      state: a :class:`TrainState`.
      batch: ``(x, y)`` or ``(x, y, weights)``.
      loss: the loss (see :func:`resolve_loss`).

    Returns:
      A flat ``{name: scalar}`` dict.
    """
    return _diagnostics_step(state, batch, resolve_loss(loss))


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _diagnostics_step(state: TrainState, batch: Batch, loss_fn: LossFn) -> dict:
    grads, sums, _, updated = _grads(state, batch, 1, loss_fn, collect=("intermediates",))
    updates, _ = optimizer_update(
        state.tx, grads, state.opt_state, state.params, _means(sums)["loss"]
    )
    return summarize(state.params, grads, updates, updated.get("intermediates"))
