"""``fit``: epochs of shuffled minibatches with evaluation, early stopping and a history.

How an epoch runs: the training set is put on the device once; each epoch the host draws
an index array (a fresh permutation from ``numpy.random.default_rng([seed, epoch])``, or
a sampler's choice), drops the last partial batch (``len // B`` full batches; the dropped
examples differ every epoch because the permutation does), and one jitted program runs
the whole epoch as a ``lax.scan`` of :func:`train_step_fn` that gathers each batch on the
device. So a run compiles ONE program per distinct ``(steps per epoch, batch size)`` —
one per distinct batch size of a batch-size schedule — and nothing syncs with the host
inside an epoch. The progress bar advances per epoch.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from jaxopt_dl import checkpoint, distributed
from jaxopt_dl._core import check_positive
from jaxopt_dl.training.history import History
from jaxopt_dl.training.state import TrainState
from jaxopt_dl.training.steps import diagnostics_step, eval_step, train_step_fn

__all__ = [
    "fit", "evaluate", "epoch_indices", "train_state_shardings", "NonFiniteError", "Sampler",
    "Callback",
]

Data = tuple  # (x, y) arrays
Sampler = Callable[[int, np.random.Generator], Union[np.ndarray, tuple]]
Callback = Callable[[int, TrainState, History], Optional[bool]]


class NonFiniteError(RuntimeError):
    """Training hit too many consecutive NaN/Inf steps.

    Attributes:
      step: index (0-based, counting every attempted step) of the first step of the
        non-finite streak.
      layer: path of the first parameter (in tree order) whose gradient was non-finite,
        or ``None`` when only the loss was.
      state: the last finite :class:`TrainState` (skipped steps leave it unchanged).
      history: the :class:`History` up to the stop.
    """

    def __init__(self, message: str, step: int, layer: Optional[str], state, history):
        super().__init__(message)
        self.step, self.layer, self.state, self.history = step, layer, state, history


def epoch_indices(
    num_examples: int,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    sampler: Optional[Sampler] = None,
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The ``(steps, batch_size)`` example indices (and weights) of one epoch.

    Deterministic in ``(seed, epoch)``: the generator is ``default_rng([seed, epoch])``.
    The last partial batch is dropped.

    Args:
      num_examples: size of the training set.
      batch_size: examples per step.
      seed: run seed.
      epoch: epoch index.
      shuffle: permute (else take the examples in order); ignored with a ``sampler``.
      sampler: ``sampler(epoch, rng) -> indices`` or ``(indices, weights)`` (1-D).

    Returns:
      ``(indices, weights)``, ``weights`` ``None`` unless the sampler gave some.

    Raises:
      ValueError: if not even one full batch fits.

    Example:
      >>> idx, _ = epoch_indices(10, 3, seed=0, epoch=0)
      >>> idx.shape, len(set(idx.ravel().tolist()))
      ((3, 3), 9)
    """
    rng = np.random.default_rng([seed, epoch])
    weights = None
    if sampler is not None:
        drawn = sampler(epoch, rng)
        indices, weights = drawn if isinstance(drawn, tuple) else (drawn, None)
    elif shuffle:
        indices = rng.permutation(num_examples)
    else:
        indices = np.arange(num_examples)
    steps = len(indices) // batch_size
    if steps == 0:
        raise ValueError(
            f"batch_size must be at most the number of examples per epoch ({len(indices)}), "
            f"got batch_size={batch_size}"
        )
    shape = (steps, batch_size)
    indices = np.asarray(indices[: steps * batch_size], np.int32).reshape(shape)
    if weights is not None:
        weights = np.asarray(weights[: steps * batch_size], np.float32).reshape(shape)
    return indices, weights


def train_state_shardings(
    state: TrainState, mesh: Mesh, fsdp: bool = False, axis: str = "data"
) -> TrainState:
    """Shardings of a :class:`TrainState` on ``mesh`` for data-parallel or FSDP training.

    Data parallel (``fsdp=False``): everything replicated. FSDP: the params sharded by
    :func:`jaxopt_dl.distributed.fsdp_sharding` over ``axis`` and every param-shaped
    subtree of the optimizer state (moments, accumulators) sharded like its params
    (:func:`jaxopt_dl.distributed.follow_params`); the rest (step, rng, batch
    statistics, counters, scalar optimizer state) replicated. Reads only shapes, so it
    also works on the traced state inside ``jit``.

    Returns:
      A :class:`TrainState`-shaped tree of ``NamedSharding``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_dl as jdl
      >>> from jaxopt_dl import distributed, training
      >>> state = training.create_train_state(
      ...     jdl.models.MLP(hidden=(8,)), jdl.adam(1e-3), jax.random.key(0), jnp.zeros((1, 64)))
      >>> mesh = distributed.make_mesh(data=jax.device_count())
      >>> shardings = training.train_state_shardings(state, mesh, fsdp=True)
      >>> state = jax.device_put(state, shardings)
    """
    replicated = distributed.replicated_sharding(mesh)
    shardings = jax.tree.map(lambda _: replicated, state)
    if not fsdp:
        return shardings
    params = distributed.fsdp_sharding(state.params, mesh, axis)
    opt_state = distributed.follow_params(state.opt_state, state.params, params, mesh)
    return shardings.replace(params=params, opt_state=opt_state)


@functools.partial(
    jax.jit, static_argnames=("grad_accum_steps", "max_consecutive_nonfinite", "mesh", "fsdp")
)
def _train_epoch(state, x, y, indices, weights, grad_accum_steps, max_consecutive_nonfinite,
                 mesh=None, fsdp=False):
    def body(state, step_inputs):
        idx, w = step_inputs
        batch = (x[idx], y[idx], w)
        if mesh is not None:
            batch = jax.lax.with_sharding_constraint(
                batch, distributed.data_parallel_sharding(mesh))
        state, metrics = train_step_fn(state, batch, grad_accum_steps, max_consecutive_nonfinite)
        if mesh is not None:
            shardings = train_state_shardings(state, mesh, fsdp)
            state = jax.lax.with_sharding_constraint(state, shardings)
        return state, metrics

    return jax.lax.scan(body, state, (indices, weights))


def evaluate(state: TrainState, data: Data, batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on ``data = (x, y)`` with ``train=False``.

    Evaluates in chunks of ``batch_size`` (the last chunk padded with zero-weight
    examples, so at most two programs compile).

    Returns:
      ``(loss, accuracy)`` as Python floats.
    """
    x, y = np.asarray(data[0]), np.asarray(data[1])
    n = len(x)
    size = min(batch_size, n)
    totals = np.zeros(3)
    for start in range(0, n, size):
        xb, yb = x[start : start + size], y[start : start + size]
        w = np.ones(len(xb), np.float32)
        if len(xb) < size:
            pad = size - len(xb)
            xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)])
            yb = np.concatenate([yb, np.zeros(pad, yb.dtype)])
            w = np.concatenate([w, np.zeros(pad, np.float32)])
        out = eval_step(state, (xb, yb, w))
        totals += [float(out["loss_sum"]), float(out["correct"]), float(out["weight"])]
    return float(totals[0] / totals[2]), float(totals[1] / totals[2])


def _show_progress(progress: bool) -> bool:
    return progress and not os.environ.get("TQDM_DISABLE") and sys.stderr.isatty()


def _param_paths(params: Any) -> list[str]:
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return [jax.tree_util.keystr(path, simple=True, separator="/") for path, _ in flat]


def _nonfinite_error(state, history, finite_flags, first_step, epoch, limit):
    flags = np.asarray(finite_flags)
    # The state froze once `limit` skips in a row had happened: find that streak.
    run, start = 0, 0
    for i, ok in enumerate(flags):
        run = 0 if ok else run + 1
        if run == limit:
            start = i - limit + 1
            break
    step = first_step + start
    leaf = int(state.nonfinite_leaf)
    layer = _param_paths(state.params)[leaf] if leaf >= 0 else None
    where = f"gradient of {layer}" if layer else "loss (gradients finite)"
    message = (
        f"non-finite loss at step {step} (epoch {epoch}): {limit} consecutive steps skipped; "
        f"first non-finite: {where}. The state holds the last finite params."
    )
    return NonFiniteError(message, step, layer, state, history)


def _checkpoint_tree(state: TrainState, best: Optional[TrainState]) -> dict:
    """What a checkpoint holds: the state and (with early stopping) the best params."""
    if best is None:
        return {"state": state}
    return {"state": state, "best": {"params": best.params, "batch_stats": best.batch_stats}}


def fit(
    state: TrainState,
    train_data: Data,
    val_data: Optional[Data] = None,
    *,
    epochs: int,
    batch_size: Optional[int] = None,
    batch_size_schedule: Optional[Callable[[int], int]] = None,
    seed: int = 0,
    shuffle: bool = True,
    sampler: Optional[Sampler] = None,
    grad_accum_steps: int = 1,
    early_stopping_patience: Optional[int] = None,
    max_consecutive_nonfinite: int = 5,
    diagnostics: bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    eval_batch_size: int = 1024,
    mesh: Optional[Mesh] = None,
    fsdp: bool = False,
    checkpoint_dir: Optional[str] = None,
    checkpoint_every: int = 1,
    resume: bool = True,
    checkpoint_backend: str = "msgpack",
    checkpoint_keep: Optional[int] = 3,
) -> tuple[TrainState, History]:
    """Train a classifier for ``epochs`` epochs of shuffled minibatches.

    Each epoch: draw the batches (see :func:`epoch_indices`), run them as one compiled
    ``lax.scan`` of :func:`train_step`, evaluate on ``val_data``, optionally record
    diagnostics, call the callbacks, update the progress bar.

    Early stopping (Goodfellow et al. 2016, Alg. 7.1): with ``early_stopping_patience=p``
    training stops after ``p`` epochs without a lower validation loss and the params and
    batch statistics of the best epoch are restored (the optimizer state and step stay
    those of the last epoch).

    Args:
      state: the initial :class:`TrainState`.
      train_data: ``(x, y)`` arrays.
      val_data: ``(x, y)`` evaluated after every epoch (needed for early stopping).
      epochs: number of epochs.
      batch_size: examples per step (or give ``batch_size_schedule``).
      batch_size_schedule: ``epoch -> batch size``, e.g. ``jdl.step_doubling_batch_size``;
        one compile per distinct size.
      seed: seed of the per-epoch shuffles.
      shuffle: reshuffle every epoch (else the data order).
      sampler: ``sampler(epoch, rng) -> indices`` or ``(indices, weights)`` replacing the
        shuffle (e.g. :class:`jaxopt_dl.training.CurriculumSampler`).
      grad_accum_steps: micro-batches per step (see :func:`train_step`).
      early_stopping_patience: epochs without validation improvement before stopping.
      max_consecutive_nonfinite: after this many NaN/Inf steps in a row raise
        :class:`NonFiniteError` (isolated non-finite steps are skipped and counted).
      diagnostics: record :func:`diagnostics_step` of the first batch after every epoch.
      callbacks: ``callback(epoch, state, history)``; a ``True`` return stops training.
      progress: show a tqdm bar (only on a terminal and when ``TQDM_DISABLE`` is unset).
      eval_batch_size: chunk size of the evaluation.
      mesh: a mesh with a ``"data"`` axis (:func:`jaxopt_dl.distributed.make_mesh`):
        each batch is split over ``"data"`` (data parallelism; XLA all-reduces the
        gradients) and the state is laid out by :func:`train_state_shardings`.
      fsdp: with ``mesh``, also shard the params and their optimizer state over
        ``"data"`` (fully sharded data parallelism).
      checkpoint_dir: save the full training state (params, batch statistics,
        optimizer state, step, rng, non-finite counters, early-stopping best params)
        with the epoch, history and seed every ``checkpoint_every`` epochs and after the
        last one (:func:`jaxopt_dl.checkpoint.save_checkpoint`, atomic; the checkpoint's
        step is the number of finished epochs).
      checkpoint_every: epochs between checkpoints.
      resume: with ``checkpoint_dir``, continue from its latest checkpoint: the epoch
        order is a function of ``(seed, epoch)`` and the rng is in the state, so the
        resumed run is bit-identical to an uninterrupted one. ``state`` is the template
        (its structure, shapes and dtypes must match the checkpoint's). A ``sampler``
        must be a function of its ``(epoch, rng)`` arguments for this to hold.
      checkpoint_backend: ``"msgpack"`` or ``"orbax"``.
      checkpoint_keep: how many checkpoints to keep (``None``: all).

    Returns:
      ``(state, history)``.

    Raises:
      ValueError: bad ``epochs``/``batch_size``/``grad_accum_steps``/
        ``checkpoint_every``, early stopping without ``val_data``, ``fsdp`` without a
        ``mesh``, or a checkpoint that does not match ``state``.
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
      Goodfellow et al. 2016, Sec. 8.1.3 (minibatches, shuffling) and Alg. 7.1 (early
      stopping); seed 002 (batch-size schedules, debugging diagnostics).
    """
    check_positive("epochs", epochs)
    check_positive("grad_accum_steps", grad_accum_steps)
    if (batch_size is None) == (batch_size_schedule is None):
        raise ValueError(
            "give exactly one of batch_size and batch_size_schedule, got "
            f"batch_size={batch_size!r}, batch_size_schedule={batch_size_schedule!r}"
        )
    if batch_size is not None:
        check_positive("batch_size", batch_size)
    if early_stopping_patience is not None:
        check_positive("early_stopping_patience", early_stopping_patience)
        if val_data is None:
            raise ValueError("early_stopping_patience needs val_data, got val_data=None")
    check_positive("checkpoint_every", checkpoint_every)
    if fsdp and mesh is None:
        raise ValueError("fsdp=True needs a mesh, got mesh=None")
    schedule = batch_size_schedule or (lambda epoch: batch_size)

    x_host, y_host = np.asarray(train_data[0]), np.asarray(train_data[1])
    x, y = jnp.asarray(x_host), jnp.asarray(y_host)
    if mesh is not None:
        state = jax.device_put(state, train_state_shardings(state, mesh, fsdp))
        x, y = jax.device_put((x, y), distributed.replicated_sharding(mesh))
    history = History()
    best = (np.inf, state)
    since_best = 0
    global_step = 0
    first_epoch = 0
    stopping = early_stopping_patience is not None
    latest = None if checkpoint_dir is None or not resume else checkpoint.latest_step(
        checkpoint_dir)
    if latest is not None:
        saved = checkpoint.restore_checkpoint(
            checkpoint_dir, _checkpoint_tree(state, state if stopping else None), latest)
        info = checkpoint.checkpoint_metadata(checkpoint_dir, latest)["metadata"]
        if info.get("seed") != seed:
            raise ValueError(
                f"the checkpoint in checkpoint_dir={checkpoint_dir!r} was written with "
                f"seed={info.get('seed')}, got seed={seed}"
            )
        state = saved["state"]
        if stopping:
            best = (np.inf if info["best_loss"] is None else info["best_loss"],
                    state.replace(**saved["best"]))
        since_best, global_step = info["since_best"], info["global_step"]
        first_epoch = info["epoch"]
        history = History.from_dict(info["history"])

    def save(epoch):
        checkpoint.save_checkpoint(
            checkpoint_dir, _checkpoint_tree(state, best[1] if stopping else None), epoch,
            backend=checkpoint_backend,
            keep=checkpoint_keep, metadata={
                "epoch": epoch, "global_step": global_step, "seed": seed,
                "since_best": since_best, "history": history.to_dict(),
                "best_loss": float(best[0]) if np.isfinite(best[0]) else None,
            })

    epochs_iter = tqdm(range(first_epoch, epochs), desc="train", unit="epoch",
                       initial=first_epoch, total=epochs, disable=not _show_progress(progress))
    for epoch in epochs_iter:
        start = time.perf_counter()
        size = int(schedule(epoch))
        indices, weights = epoch_indices(len(x_host), size, seed, epoch, shuffle, sampler)
        if size % grad_accum_steps:
            raise ValueError(
                f"the batch size ({size}) must be a multiple of grad_accum_steps, "
                f"got grad_accum_steps={grad_accum_steps}"
            )
        if weights is None:
            weights = np.ones(indices.shape, np.float32)
        state, metrics = _train_epoch(
            state, x, y, indices, weights, grad_accum_steps, max_consecutive_nonfinite,
            mesh, fsdp,
        )
        metrics = jax.device_get(metrics)
        steps = len(metrics["loss"])
        step_loss = np.where(metrics["finite"], metrics["loss"], np.nan)
        history.step_loss.extend(step_loss.tolist())
        if "learning_rate" in metrics:
            history.step_learning_rate.extend(metrics["learning_rate"].tolist())
        history.nonfinite_steps = int(state.nonfinite_total)
        if int(state.nonfinite_streak) >= max_consecutive_nonfinite:
            raise _nonfinite_error(
                state, history, metrics["finite"], global_step, epoch, max_consecutive_nonfinite
            )
        global_step += steps
        finite = metrics["finite"]
        history.epoch.append(epoch)
        history.batch_size.append(size)
        history.steps_per_epoch.append(steps)
        history.train_loss.append(float(np.mean(metrics["loss"][finite])) if finite.any() else None)
        history.train_accuracy.append(float(np.mean(metrics["accuracy"][finite]))
                                      if finite.any() else None)
        postfix = {"loss": history.train_loss[-1]}
        if val_data is not None:
            val_loss, val_acc = evaluate(state, val_data, eval_batch_size)
            history.val_loss.append(val_loss)
            history.val_accuracy.append(val_acc)
            postfix.update(val_loss=val_loss, val_acc=val_acc)
        if diagnostics:
            first = indices[0]
            out = diagnostics_step(state, (x[first], y[first], weights[0]))
            history.diagnostics.append({k: float(v) for k, v in jax.device_get(out).items()})
        history.epoch_time.append(time.perf_counter() - start)
        epochs_iter.set_postfix({k: f"{v:.4g}" for k, v in postfix.items() if v is not None})

        stop = False
        if early_stopping_patience is not None:
            if history.val_loss[-1] < best[0]:
                best, since_best = (history.val_loss[-1], state), 0
                history.best_epoch = epoch
            else:
                since_best += 1
                stop = since_best >= early_stopping_patience
        for callback in callbacks:
            stop = bool(callback(epoch, state, history)) or stop
        if checkpoint_dir is not None and (
            stop or epoch + 1 == epochs or (epoch + 1) % checkpoint_every == 0
        ):
            save(epoch + 1)
        if stop:
            history.stopped_early = (
                early_stopping_patience is not None and since_best >= early_stopping_patience
            )
            break
    epochs_iter.close()
    if early_stopping_patience is not None:
        state = state.replace(params=best[1].params, batch_stats=best[1].batch_stats)
    return state, history
