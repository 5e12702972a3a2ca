"""``fit``: a small epoch loop; everything else is a callback.

How an epoch runs on in-memory arrays: the training set is put on the device once; each
epoch the host draws an index array (:func:`~jaxopt_dl.training.epoch_indices`) and one
jitted program runs the whole epoch (:func:`~jaxopt_dl.training.scan_epoch`, the helper
``sweep`` uses too). So a run compiles ONE program per distinct ``(steps per epoch,
batch size)`` and nothing syncs with the host inside an epoch.

On an iterable of batches (data streamed from disk, larger than memory) each batch is
one jitted step; batches are put on the device ``prefetch`` steps ahead, so the copy
overlaps the previous steps.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxopt_dl import distributed
from jaxopt_dl._core import check_bool, check_int
from jaxopt_dl.training.callbacks import (
    Callback,
    ModelCheckpoint,
    NonFiniteGuard,
    ProgressLogger,
    Trainer,
)
from jaxopt_dl.training.epoch import Sampler, epoch_indices, scan_epoch, train_state_shardings
from jaxopt_dl.training.history import History
from jaxopt_dl.training.state import TrainState
from jaxopt_dl.training.steps import (
    STEP_STATIC,
    LossFn,
    Metrics,
    diagnostics_step,
    eval_step,
    resolve_loss,
    resolve_metrics,
    train_step_fn,
)

__all__ = ["fit", "evaluate", "evaluate_metrics", "FitConfig"]

Data = tuple  # (x, y) arrays
Batches = Union[Iterable[tuple], Callable[[int], Iterable[tuple]]]


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """The less common options of :func:`fit`.

    Attributes:
      batch_size_schedule: ``epoch -> batch size`` instead of ``batch_size`` (e.g.
        ``jdl.step_doubling_batch_size``); one compile per distinct size.
      shuffle: reshuffle every epoch (else the data order).
      sampler: ``sampler(epoch, rng) -> indices`` or ``(indices, weights)`` replacing the
        shuffle (e.g. :class:`jaxopt_dl.training.CurriculumSampler`).
      grad_accum_steps: micro-batches per step (see :func:`~jaxopt_dl.training.train_step`).
      eval_batch_size: chunk size of the evaluation.
      diagnostics: record :func:`~jaxopt_dl.training.diagnostics_step` of the first
        batch after every epoch.
      mesh: a mesh with a ``"data"`` axis (:func:`jaxopt_dl.distributed.make_mesh`):
        each batch is split over ``"data"`` (data parallelism; XLA all-reduces the
        gradients) and the state is laid out by
        :func:`~jaxopt_dl.training.train_state_shardings`.
      fsdp: with ``mesh``, also shard the params and their optimizer state over
        ``"data"`` (fully sharded data parallelism).
      prefetch: batches of streamed data put on the device ahead of the step.
    """

    batch_size_schedule: Optional[Callable[[int], int]] = None
    shuffle: bool = True
    sampler: Optional[Sampler] = None
    grad_accum_steps: int = 1
    eval_batch_size: int = 1024
    diagnostics: bool = False
    mesh: Optional[Mesh] = None
    fsdp: bool = False
    prefetch: int = 2

    def __post_init__(self):
        check_int("grad_accum_steps", self.grad_accum_steps, 1)
        check_int("eval_batch_size", self.eval_batch_size, 1)
        check_int("prefetch", self.prefetch, 1)
        check_bool("shuffle", self.shuffle)
        check_bool("diagnostics", self.diagnostics)
        check_bool("fsdp", self.fsdp)
        if self.fsdp and self.mesh is None:
            raise ValueError("fsdp=True needs a mesh, got mesh=None")


# Host-side receivers of per-step reports from inside the epoch program. A module-level
# dispatcher (not a new function per run) keeps the compiled program cached across runs.
_step_listeners: list = []


def _report_step(step, metrics) -> None:
    logs = {k: np.asarray(v) for k, v in metrics.items() if not isinstance(v, dict)}
    for callback in _step_listeners:
        callback.on_batch_end(int(step), logs)


_EPOCH_STATIC = STEP_STATIC + ("mesh", "fsdp", "on_step")
_train_epoch = jax.jit(scan_epoch, static_argnames=_EPOCH_STATIC)
_train_batch = jax.jit(train_step_fn, static_argnames=STEP_STATIC)


def _is_arrays(data: Any) -> bool:
    return (
        isinstance(data, tuple) and len(data) in (2, 3) and all(hasattr(a, "shape") for a in data)
    )


def evaluate_metrics(
    state: TrainState,
    data: Union[Data, Iterable[tuple]],
    batch_size: int = 1024,
    loss: Union[str, LossFn, None] = None,
    metrics: Optional[Sequence[Any]] = None,
) -> dict:
    """Mean loss and metrics with ``train=False`` on arrays or an iterable of batches.

    Arrays are evaluated in chunks of ``batch_size`` (the last chunk padded with
    zero-weight examples, so at most two programs compile).

    Args:
      state: a :class:`TrainState`.
      data: ``(x, y)`` arrays, or an iterable of ``(x, y)`` / ``(x, y, weights)`` batches.
      batch_size: chunk size for arrays.
      loss: the loss (see :func:`~jaxopt_dl.training.resolve_loss`).
      metrics: names and functions (see :func:`~jaxopt_dl.training.resolve_metrics`;
        ``None``: the accuracy for the cross-entropy, nothing for another loss).

    Returns:
      ``{"loss": ..., <metric>: ...}`` as Python floats.
    """
    check_int("batch_size", batch_size, 1)
    loss_fn = resolve_loss(loss)
    resolved = metrics if _is_resolved(metrics) else resolve_metrics(metrics, loss_fn)
    if _is_arrays(data):
        batches = _chunks(np.asarray(data[0]), np.asarray(data[1]), batch_size)
    else:
        batches = data
    totals = collections.Counter()
    for batch in batches:
        out = jax.device_get(eval_step(state, tuple(batch), loss=loss_fn, metrics=resolved))
        totals.update({k: float(v) for k, v in out.items()})
    if not totals:
        raise ValueError("data must hold at least one example, got no batches")
    weight = totals["weight"]
    return {"loss": totals["loss_sum"] / weight} | {
        name: totals[name] / weight for name, _ in resolved
    }


def _is_resolved(metrics: Any) -> bool:
    return isinstance(metrics, tuple) and all(
        isinstance(m, tuple) and len(m) == 2 and isinstance(m[0], str) for m in metrics
    )


def evaluate(
    state: TrainState,
    data: Union[Data, Iterable[tuple]],
    batch_size: int = 1024,
    loss: Union[str, LossFn, None] = None,
) -> tuple[float, Optional[float]]:
    """Mean loss and accuracy with ``train=False`` on arrays or an iterable of batches.

    Arrays are evaluated in chunks of ``batch_size`` (the last chunk padded with
    zero-weight examples, so at most two programs compile). For other metrics see
    :func:`evaluate_metrics`.

    Args:
      state: a :class:`TrainState`.
      data: ``(x, y)`` arrays, or an iterable of ``(x, y)`` / ``(x, y, weights)`` batches.
      batch_size: chunk size for arrays.
      loss: the loss (see :func:`~jaxopt_dl.training.resolve_loss`).

    Returns:
      ``(loss, accuracy)`` as Python floats; ``accuracy`` is ``None`` unless the loss is
      the cross-entropy.
    """
    out = evaluate_metrics(state, data, batch_size, loss)
    return out["loss"], out.get("accuracy")


def _chunks(x: np.ndarray, y: np.ndarray, batch_size: int) -> Iterator[tuple]:
    size = min(batch_size, len(x))
    for start in range(0, len(x), size):
        xb, yb = x[start : start + size], y[start : start + size]
        w = np.ones(len(xb), np.float32)
        pad = size - len(xb)
        if pad:
            xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)])
            yb = np.concatenate([yb, np.zeros((pad,) + yb.shape[1:], yb.dtype)])
            w = np.concatenate([w, np.zeros(pad, np.float32)])
        yield xb, yb, w


def _prefetch(batches: Iterable[tuple], size: int, sharding) -> Iterator[tuple]:
    """Put batches on the device ``size`` ahead of their use (``device_put`` is async)."""
    queue: collections.deque = collections.deque()
    for batch in batches:
        queue.append(jax.device_put(tuple(batch), sharding))
        if len(queue) > size:
            yield queue.popleft()
    while queue:
        yield queue.popleft()


def _assemble_callbacks(
    callbacks: Sequence[Callback], progress: bool, checkpoint_dir: Optional[str]
) -> list:
    """The run's callbacks in call order: guard, progress, the user's, then checkpoints.

    Checkpoints come last so that they save what the other callbacks decided this
    epoch (best params, a stop) and restore their progress after they initialized.
    """
    callbacks = list(callbacks)
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise TypeError(
                f"callbacks must be Callback instances (wrap a function in LambdaCallback), "
                f"got {callback!r}"
            )
    if checkpoint_dir is not None:
        callbacks.append(ModelCheckpoint(checkpoint_dir))
    if progress and not any(isinstance(c, ProgressLogger) for c in callbacks):
        callbacks.insert(0, ProgressLogger())
    if not any(isinstance(c, NonFiniteGuard) for c in callbacks):
        callbacks.insert(0, NonFiniteGuard())
    checkpoints = [c for c in callbacks if isinstance(c, ModelCheckpoint)]
    return [c for c in callbacks if not isinstance(c, ModelCheckpoint)] + checkpoints


def _per_step_rates(rates: Any, steps: int) -> list:
    if isinstance(rates, dict):
        return [{group: float(values[i]) for group, values in rates.items()} for i in range(steps)]
    return np.asarray(rates).tolist()


def fit(
    state: TrainState,
    train_data: Union[Data, Batches],
    val_data: Optional[Data] = None,
    *,
    epochs: int,
    batch_size: Optional[int] = None,
    loss: Union[str, LossFn, None] = None,
    metrics: Optional[Sequence[Any]] = None,
    seed: int = 0,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: Optional[str] = None,
    progress: bool = True,
    config: Optional[FitConfig] = None,
) -> tuple[TrainState, History]:
    """Train for ``epochs`` epochs; early stopping, checkpoints and logging are callbacks.

    Each epoch: run the steps (in-memory arrays: the shuffled minibatches of
    :func:`~jaxopt_dl.training.epoch_indices` as one compiled ``lax.scan``; an
    iterable: one jitted step per batch), evaluate on ``val_data``, record the
    :class:`History`, call the callbacks' ``on_epoch_end`` (see
    :mod:`jaxopt_dl.training.callbacks`).

    Args:
      state: the initial :class:`TrainState`.
      train_data: ``(x, y)`` arrays, or streamed batches: an iterable of ``(x, y)`` /
        ``(x, y, weights)`` batches read again every epoch (e.g. a list or a loader
        object), or a function ``epoch -> iterable`` (for a per-epoch order); a
        one-shot iterator only for ``epochs=1``.
      val_data: ``(x, y)`` (or an iterable of batches) evaluated after every epoch.
      epochs: the epoch at which training ends.
      batch_size: examples per step for arrays (or give
        ``config.batch_size_schedule``); ``None`` for streamed batches.
      loss: ``"cross_entropy"`` (default; integer labels, accuracy reported), ``"mse"``
        or any ``loss(outputs, targets)`` (see :func:`~jaxopt_dl.training.resolve_loss`).
      metrics: what to report besides the loss, on the training steps and on
        ``val_data``, as Keras's ``metrics=``: names (``"accuracy"``, ``"mse"``,
        ``"mae"``) and functions ``fn(outputs, targets)`` returning per-example values
        (reported under the function's ``__name__``). Default: ``["accuracy"]`` for the
        cross-entropy, nothing for another loss.
      seed: seed of the per-epoch shuffles.
      callbacks: :class:`~jaxopt_dl.training.Callback` objects, e.g.
        :class:`~jaxopt_dl.training.EarlyStopping`. ``fit`` adds a
        :class:`~jaxopt_dl.training.NonFiniteGuard` (5 steps) unless one is given.
      checkpoint_dir: shorthand for ``callbacks=[ModelCheckpoint(checkpoint_dir)]``:
        save every epoch and resume bit-identically from the newest checkpoint.
      progress: add a :class:`~jaxopt_dl.training.ProgressLogger` (one line per
        epoch; a bar within the epoch on a terminal) unless one is given.
      config: a :class:`FitConfig` with the other options (batch-size schedule,
        sampler, gradient accumulation, mesh, diagnostics, ...).

    Returns:
      ``(state, history)``.

    Raises:
      ValueError: bad ``epochs``/``batch_size``/``metrics`` (a fraction, a value out of
        range, an unknown name; checked before anything trains or is written), early
        stopping without ``val_data``, or a checkpoint that does not match ``state``.
      TypeError: an argument of the wrong type (e.g. ``epochs="3"``, a metric that is
        neither a name nor a function).
      NonFiniteError: too many consecutive non-finite steps.

    Example:
      >>> import jax, jaxopt_dl as jdl
      >>> (x, y), test = jdl.data.load_digits()
      >>> state = jdl.training.create_train_state(
      ...     jdl.models.MLP(hidden=(32,)), jdl.adam(1e-2), jax.random.key(0), x[:1])
      >>> state, history = jdl.training.fit(state, (x, y), test, epochs=2, batch_size=128,
      ...                                   progress=False)
      >>> len(history.step_loss), history.val_accuracy[-1] > 0.8
      (22, True)

    References:
      Goodfellow, Bengio & Courville 2016, "Deep Learning", Sec. 8.1.3 (minibatches,
      shuffling) and Alg. 7.1 (early stopping).
    """
    config = config or FitConfig()
    if not isinstance(config, FitConfig):
        raise TypeError(f"config must be a FitConfig, got config={config!r}")
    check_int("epochs", epochs, 1)
    check_int("seed", seed)
    check_bool("progress", progress)
    loss_fn = resolve_loss(loss)
    metric_fns = resolve_metrics(metrics, loss_fn)
    streamed = not _is_arrays(train_data)
    if streamed:
        for name, value in (
            ("batch_size", batch_size),
            ("config.batch_size_schedule", config.batch_size_schedule),
            ("config.sampler", config.sampler),
        ):
            if value is not None:
                raise ValueError(
                    f"{name} applies to (x, y) arrays, not to streamed "
                    f"batches, got {name}={value!r}"
                )
        if not callable(train_data) and iter(train_data) is train_data and epochs > 1:
            raise ValueError(
                "train_data is a one-shot iterator, so it can only feed epochs=1; pass an "
                f"iterable read again every epoch or a function epoch -> batches, got "
                f"epochs={epochs}"
            )
    elif (batch_size is None) == (config.batch_size_schedule is None):
        raise ValueError(
            "give exactly one of batch_size and config.batch_size_schedule, got "
            f"batch_size={batch_size!r}, batch_size_schedule={config.batch_size_schedule!r}"
        )
    elif batch_size is not None:
        check_int("batch_size", batch_size, 1)

    callbacks = _assemble_callbacks(callbacks, progress, checkpoint_dir)
    guard = next(c for c in callbacks if isinstance(c, NonFiniteGuard))
    mesh = config.mesh
    if mesh is not None:
        state = jax.device_put(state, train_state_shardings(state, mesh, config.fsdp))
    trainer = Trainer(
        state=state,
        history=History(),
        epochs=epochs,
        seed=seed,
        has_validation=val_data is not None,
        callbacks=callbacks,
    )
    for callback in callbacks:
        callback.set_trainer(trainer)
    for callback in callbacks:
        callback.on_train_begin({})
    listeners = [c for c in callbacks if c.per_batch]
    step_options = dict(
        grad_accum_steps=config.grad_accum_steps,
        max_consecutive_nonfinite=guard.max_consecutive,
        loss=loss_fn,
        feed_loss=trainer.feed_step_loss,
        metrics=metric_fns,
    )
    if not streamed:
        x, y = jnp.asarray(train_data[0]), jnp.asarray(train_data[1])
        if mesh is not None:
            x, y = jax.device_put((x, y), distributed.replicated_sharding(mesh))
    logs: dict = {}
    for epoch in range(trainer.first_epoch, epochs):
        start = time.perf_counter()
        if streamed:
            batches = train_data(epoch) if callable(train_data) else train_data
            steps = len(batches) if hasattr(batches, "__len__") else None
            size = None
        else:
            size = int(
                config.batch_size_schedule(epoch) if config.batch_size_schedule else batch_size
            )
            if size % config.grad_accum_steps:
                raise ValueError(
                    f"the batch size ({size}) must be a multiple of grad_accum_steps, "
                    f"got grad_accum_steps={config.grad_accum_steps}"
                )
            indices, weights = epoch_indices(
                len(x), size, seed, epoch, config.shuffle, config.sampler
            )
            if weights is None:
                weights = np.ones(indices.shape, np.float32)
            steps = len(indices)
        for callback in callbacks:
            callback.on_epoch_begin(epoch, {"steps": steps})
        _step_listeners[:] = listeners
        try:
            if streamed:
                state, metrics, first_batch = _stream_epoch(
                    trainer.state, batches, epoch, step_options, config, listeners
                )
            else:
                state, metrics = _train_epoch(
                    trainer.state,
                    x,
                    y,
                    indices,
                    weights,
                    mesh=mesh,
                    fsdp=config.fsdp,
                    on_step=_report_step if listeners else None,
                    **step_options,
                )
                if listeners:
                    jax.effects_barrier()
                first_batch = (x[indices[0]], y[indices[0]], weights[0])
        finally:
            _step_listeners.clear()
        metrics = jax.device_get(metrics)
        trainer.state, trainer.step_metrics = state, metrics
        steps = len(metrics["loss"])
        trainer.global_step += steps
        logs = _record_epoch(trainer, epoch, size, metrics, val_data, loss_fn, metric_fns, config)
        if config.diagnostics:
            out = diagnostics_step(state, first_batch, loss=loss_fn)
            trainer.history.diagnostics.append(
                {k: float(v) for k, v in jax.device_get(out).items()}
            )
        trainer.history.epoch_time.append(time.perf_counter() - start)
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
        if trainer.stop_training:
            break
    for callback in callbacks:
        callback.on_train_end(logs)
    return trainer.state, trainer.history


def _stream_epoch(state, batches, epoch, step_options, config, listeners):
    """One jitted step per streamed batch; the metrics stay on the device until the end."""
    sharding = None if config.mesh is None else distributed.data_parallel_sharding(config.mesh)
    collected, first_batch = [], None
    for i, batch in enumerate(_prefetch(batches, config.prefetch, sharding)):
        if first_batch is None:
            first_batch = batch
        state, metrics = _train_batch(state, batch, **step_options)
        collected.append(metrics)
        if listeners:
            _report_step(i, jax.device_get(metrics))
    if not collected:
        raise ValueError(f"train_data gave no batches in epoch {epoch}")
    return state, jax.tree.map(lambda *values: jnp.stack(values), *collected), first_batch


def _record_epoch(
    trainer, epoch, size, metrics, val_data, loss_fn, metric_fns: Metrics, config
) -> dict:
    """Append the epoch to the history; return the epoch's ``logs``.

    The means are over the epoch's finite steps (``None`` when every step was
    skipped); ``lr`` is the rate the epoch's last step applied.
    """
    history = trainer.history
    finite = np.asarray(metrics["finite"], bool)
    history.step_loss.extend(np.where(finite, metrics["loss"], np.nan).tolist())
    if "learning_rate" in metrics:
        rates = _per_step_rates(metrics["learning_rate"], len(finite))
        history.step_learning_rate.extend(rates)
    history.epoch.append(epoch + 1)
    history.batch_size.append(size)
    history.steps_per_epoch.append(len(finite))

    def mean(name):
        return float(np.mean(metrics[name][finite])) if finite.any() else None

    logs = {"loss": mean("loss")}
    history.train_loss.append(logs["loss"])
    for name, _ in metric_fns:
        logs[name] = mean(name)
        history.record(name, logs[name])
    if val_data is not None:
        val = evaluate_metrics(trainer.state, val_data, config.eval_batch_size, loss_fn, metric_fns)
        for name, value in val.items():
            logs[f"val_{name}"] = value
            history.record(f"val_{name}", value)
    logs["lr"] = rates[-1] if "learning_rate" in metrics else None
    history.learning_rate.append(logs["lr"])
    return logs
