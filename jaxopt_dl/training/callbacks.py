"""Callbacks of :func:`~jaxopt_dl.training.fit`: early stopping, checkpoints, logging, NaN guard.

The interface is Keras's: ``fit`` calls ``on_train_begin``, then per epoch
``on_epoch_begin(epoch, logs)``, ``on_batch_end(step, logs)`` (only for callbacks that
set ``per_batch = True``) and ``on_epoch_end(epoch, logs)``, and finally
``on_train_end``. A callback reads and changes the run through ``self.trainer``
(:class:`Trainer`): its ``state``, ``history``, and ``stop_training``, which ends the
run after the current epoch.

``logs`` at the end of an epoch holds ``loss`` (the mean of the epoch's finite steps;
``None`` when every step was skipped as non-finite), the metrics (``accuracy`` by
default for classification, see ``fit(..., metrics=...)``), ``val_loss`` /
``val_<metric>`` (with validation data) and ``lr`` (the rate the epoch's last step
applied: a float, or a dict per parameter group).

Epochs: the hooks receive Keras's 0-based index ``epoch``; everything reported (the
log line ``Epoch k/N``, ``History.epoch``, ``History.best_epoch``, messages, the CSV
and TensorBoard records) uses the epoch number ``epoch + 1``.

A callback whose progress matters for an exact resume (e.g. :class:`EarlyStopping`'s
best params) returns it from :meth:`Callback.checkpoint_state`; :class:`ModelCheckpoint`
saves it with the training state and hands it back through
:meth:`Callback.restore_state`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Callable, Optional, TextIO

import jax
import numpy as np

from jaxopt_dl import checkpoint
from jaxopt_dl._core import (
    GradientTransformation,
    check_bool,
    check_choice,
    check_int,
    check_nonnegative,
)
from jaxopt_dl.training.history import History
from jaxopt_dl.training.state import TrainState
from jaxopt_dl.training.steps import _is_plateau

__all__ = [
    "Callback",
    "Trainer",
    "LambdaCallback",
    "ProgressLogger",
    "EarlyStopping",
    "ModelCheckpoint",
    "NonFiniteGuard",
    "NonFiniteError",
    "PlateauFeeder",
    "format_logs",
]


@dataclasses.dataclass
class Trainer:
    """What a callback sees of a running :func:`~jaxopt_dl.training.fit`.

    Attributes:
      state: the current :class:`TrainState` (a callback may replace it).
      history: the :class:`History` so far.
      epochs: the epoch at which the run ends.
      seed: the run's seed.
      has_validation: whether ``fit`` got validation data.
      first_epoch: the first epoch to run (a resumed run starts after its checkpoint).
      global_step: steps attempted so far (including the current epoch's once its
        steps ran).
      step_metrics: the last epoch's per-step metrics (NumPy arrays over the steps).
      stop_training: set to ``True`` to end the run after the current epoch.
      feed_step_loss: whether every step feeds its batch loss to ``reduce_on_plateau``
        (a callback that feeds it another value sets it to ``False`` in
        ``on_train_begin``).
      callbacks: all callbacks of the run, in call order.
    """

    state: TrainState
    history: History
    epochs: int
    seed: int
    has_validation: bool
    first_epoch: int = 0
    global_step: int = 0
    step_metrics: dict = dataclasses.field(default_factory=dict)
    stop_training: bool = False
    feed_step_loss: bool = True
    callbacks: list = dataclasses.field(default_factory=list)


class Callback:
    """Base class: every hook does nothing. Override the ones you need.

    Attributes:
      trainer: the :class:`Trainer` of the run (set by ``fit`` before ``on_train_begin``).
      per_batch: ``True`` to receive :meth:`on_batch_end` after every step. In the
        one-program-per-epoch path of in-memory data this adds a host call per step.
    """

    trainer: Trainer
    per_batch: bool = False

    def set_trainer(self, trainer: Trainer) -> None:
        """Attach the run.

        Args:
          trainer: the :class:`Trainer`.
        """
        self.trainer = trainer

    def on_train_begin(self, logs: Optional[dict] = None) -> None:
        """Before the first epoch.

        Args:
          logs: unused (``{}``).
        """

    def on_train_end(self, logs: Optional[dict] = None) -> None:
        """After the last epoch (also after an early stop).

        Args:
          logs: the last epoch's logs (``{}`` if no epoch ran).
        """

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        """Before an epoch's steps.

        Args:
          epoch: the epoch index (0-based).
          logs: ``{"steps": steps of the epoch, or None when unknown}``.
        """

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        """After an epoch's steps and its evaluation.

        Args:
          epoch: the epoch index (0-based).
          logs: the epoch's metrics (see the module docstring).
        """

    def on_batch_end(self, step: int, logs: Optional[dict] = None) -> None:
        """After a step (only when :attr:`per_batch` is ``True``).

        Args:
          step: the step's index within the epoch.
          logs: the step's metrics (``loss``, ``finite``, ...) as NumPy values.
        """

    def checkpoint_state(self) -> Optional[tuple[Any, dict]]:
        """``(arrays, info)`` to save with a checkpoint, or ``None`` (nothing to save).

        ``arrays`` is a pytree of arrays, ``info`` a JSON-able dict.
        """
        return None

    def restore_state(self, arrays: Any, info: dict) -> None:
        """Take back what :meth:`checkpoint_state` returned when the run was saved.

        Args:
          arrays: the restored arrays.
          info: the restored dict.
        """


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=fn)``.

    Args:
      on_epoch_end: ``fn(epoch, trainer)``; a ``True`` return stops training.
      on_epoch_begin: ``fn(epoch, trainer)``.
      on_train_begin: ``fn(trainer)``.
      on_train_end: ``fn(trainer)``.
    """

    def __init__(
        self,
        on_epoch_end: Optional[Callable[[int, Trainer], Optional[bool]]] = None,
        on_epoch_begin: Optional[Callable[[int, Trainer], None]] = None,
        on_train_begin: Optional[Callable[[Trainer], None]] = None,
        on_train_end: Optional[Callable[[Trainer], None]] = None,
    ):
        self._epoch_end, self._epoch_begin = on_epoch_end, on_epoch_begin
        self._train_begin, self._train_end = on_train_begin, on_train_end

    def on_train_begin(self, logs=None):
        if self._train_begin is not None:
            self._train_begin(self.trainer)

    def on_train_end(self, logs=None):
        if self._train_end is not None:
            self._train_end(self.trainer)

    def on_epoch_begin(self, epoch, logs=None):
        if self._epoch_begin is not None:
            self._epoch_begin(epoch, self.trainer)

    def on_epoch_end(self, epoch, logs=None):
        if self._epoch_end is not None and self._epoch_end(epoch, self.trainer):
            self.trainer.stop_training = True


def _rate_text(rate: Any) -> str:
    if isinstance(rate, dict):
        return " ".join(f"{group}={value:.1e}" for group, value in rate.items())
    return f"{rate:.1e}"


_SHORT = {"accuracy": "acc", "val_accuracy": "val_acc"}


def format_logs(epoch: int, epochs: int, seconds: float, logs: dict) -> str:
    """One epoch's log line, e.g. ``Epoch 3/10 - 1.2s - loss 0.312 - acc 0.911 - lr 1.0e-03``.

    Args:
      epoch: the epoch index (0-based; printed 1-based).
      epochs: the number of epochs of the run.
      seconds: the epoch's wall time.
      logs: the epoch's metrics.

    Returns:
      The line.
    """
    parts = [f"Epoch {epoch + 1}/{epochs}", f"{seconds:.1f}s"]
    for key, value in logs.items():
        if key == "lr":
            continue
        if value is None:
            parts.append(f"{_SHORT.get(key, key)} nan")
        elif isinstance(value, float):
            parts.append(f"{_SHORT.get(key, key)} {value:.4g}")
    if logs.get("lr") is not None:
        parts.append(f"lr {_rate_text(logs['lr'])}")
    return " - ".join(parts)


def _is_terminal(stream: TextIO) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("TQDM_DISABLE")


class ProgressLogger(Callback):
    """One kept line per epoch, plus a tqdm bar within the epoch on a terminal.

    The line (see :func:`format_logs`) is written on and off a terminal (logs of a job
    scheduler, CI, ``nohup``). The bar is drawn on ``bar_stream`` only when it is a
    terminal (and ``TQDM_DISABLE`` is unset); it advances per step and disappears at
    the end of the epoch.

    Args:
      stream: where the epoch lines go (default ``sys.stdout``).
      bar_stream: where the bar goes (default ``sys.stderr``).
      bar: ``False`` never draws the bar.
    """

    def __init__(
        self, stream: Optional[TextIO] = None, bar_stream: Optional[TextIO] = None, bar: bool = True
    ):
        self.stream, self.bar_stream, self.bar = stream, bar_stream, bar
        self._bar = None
        self._start = 0.0

    def on_train_begin(self, logs=None):
        self.per_batch = self.bar and _is_terminal(self.bar_stream or sys.stderr)
        self._notice = False

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        if epoch == self.trainer.first_epoch:
            # The first epoch of a run compiles its program (tens of seconds for a
            # ResNet): say so rather than sit silent. A terminal gets a line the epoch's
            # own line replaces; a pipe or file gets one plain line.
            stream = self.stream or sys.stdout
            notice = f"Epoch {epoch + 1}/{self.trainer.epochs}: compiling..."
            self._notice = _is_terminal(stream)
            print(notice, end="" if self._notice else "\n", file=stream, flush=True)
        if self.per_batch:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=(logs or {}).get("steps"),
                desc=f"Epoch {epoch + 1}",
                unit="step",
                leave=False,
                file=self.bar_stream or sys.stderr,
            )

    def on_batch_end(self, step, logs=None):
        if self._bar is not None:
            self._bar.update(1)
            loss = (logs or {}).get("loss")
            if loss is not None:
                self._bar.set_postfix(loss=f"{float(loss):.4g}", refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        line = format_logs(
            epoch, self.trainer.epochs, time.perf_counter() - self._start, logs or {}
        )
        if self._notice:
            line, self._notice = "\r\x1b[K" + line, False
        print(line, file=self.stream or sys.stdout, flush=True)


class EarlyStopping(Callback):
    """Stop when a monitored metric stops improving; restore the best params.

    Goodfellow et al. 2016, Alg. 7.1: after ``patience`` epochs without a better value
    of ``monitor`` the run stops; with ``restore_best`` the params and batch statistics
    of the best epoch are put back at the end (the optimizer state and step stay those
    of the last epoch). Sets ``history.best_epoch`` (1-based, as in the log) and
    ``history.stopped_early``. An epoch whose value is ``None`` (every step skipped as
    non-finite) counts as no improvement. At the end it says in one line when it
    stopped and which epoch's params it restored, e.g. ``EarlyStopping: stopped after
    epoch 8 (val_loss did not improve for 3 epochs); restored the params of epoch 5
    (val_loss 0.1234)``.

    Args:
      patience: epochs without improvement before stopping.
      monitor: the ``logs`` key to watch (default ``"val_loss"``).
      mode: ``"min"`` (lower is better) or ``"max"``.
      min_delta: the smallest change that counts as an improvement.
      restore_best: put the best epoch's params back at the end.
      verbose: print the one-line summary at the end.
      stream: where it goes (default ``sys.stdout``).

    References:
      Goodfellow, Bengio & Courville 2016, "Deep Learning", Alg. 7.1.
    """

    def __init__(
        self,
        patience: int,
        monitor: str = "val_loss",
        mode: str = "min",
        min_delta: float = 0.0,
        restore_best: bool = True,
        verbose: bool = True,
        stream: Optional[TextIO] = None,
    ):
        check_int("patience", patience, 1)
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a logs key (a string), got monitor={monitor!r}")
        check_choice("mode", mode, ("min", "max"))
        check_nonnegative("min_delta", min_delta)
        check_bool("restore_best", restore_best)
        check_bool("verbose", verbose)
        self.patience, self.monitor, self.mode = patience, monitor, mode
        self.min_delta, self.restore_best = min_delta, restore_best
        self.verbose, self.stream = verbose, stream
        self.best_value = math.inf
        self.wait = 0
        self.best = None
        self.stopped_here = False

    def _signed(self, value: float) -> float:
        return value if self.mode == "min" else -value

    def on_train_begin(self, logs=None):
        if self.monitor.startswith("val_") and not self.trainer.has_validation:
            raise ValueError(
                f"EarlyStopping(monitor={self.monitor!r}) needs val_data, got val_data=None"
            )
        state = self.trainer.state
        self.best = {"params": state.params, "batch_stats": state.batch_stats}
        self.best_value, self.wait = math.inf, 0
        self.stopped_here = False

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping: logs have no {self.monitor!r}, got keys {sorted(logs)}"
            )
        value = logs[self.monitor]
        if value is not None and self._signed(value) < self.best_value - self.min_delta:
            state = self.trainer.state
            self.best = {"params": state.params, "batch_stats": state.batch_stats}
            self.best_value, self.wait = self._signed(value), 0
            self.trainer.history.best_epoch = epoch + 1
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.trainer.stop_training = True
                self.trainer.history.stopped_early = True
                self.stopped_here = True

    def on_train_end(self, logs=None):
        history = self.trainer.history
        if self.restore_best and history.best_epoch is not None:
            self.trainer.state = self.trainer.state.replace(**self.best)
        # Said once, by the run that stopped (a relaunch of a stopped run trains nothing).
        if self.verbose and self.stopped_here:
            print(self.summary(), file=self.stream or sys.stdout, flush=True)

    def summary(self) -> str:
        """The one line said at the end of an early-stopped run.

        Returns:
          When the run stopped, and which epoch's params were restored (or kept).
        """
        history = self.trainer.history
        last = history.epoch[-1] if history.epoch else 0
        waited = f"{self.wait} epoch{'s' if self.wait != 1 else ''}"
        line = (
            f"EarlyStopping: stopped after epoch {last} ({self.monitor} did not improve "
            f"for {waited})"
        )
        if history.best_epoch is None:
            return line + "; no epoch improved, the last params are kept"
        best = f"{self._signed(self.best_value):.4g}"
        if self.restore_best:
            return line + (
                f"; restored the params of epoch {history.best_epoch} ({self.monitor} {best})"
            )
        return line + f"; kept the last params (best: epoch {history.best_epoch}, {best})"

    def checkpoint_state(self):
        best = self.best_value if math.isfinite(self.best_value) else None
        return self.best, {"best_value": best, "wait": self.wait}

    def restore_state(self, arrays, info):
        self.best = arrays
        self.best_value = math.inf if info["best_value"] is None else info["best_value"]
        self.wait = info["wait"]


class ModelCheckpoint(Callback):
    """Save the whole run every ``every`` epochs and resume from the newest checkpoint.

    A checkpoint (:func:`jaxopt_dl.checkpoint.save_checkpoint`, atomic; its step is the
    number of finished epochs) holds the training state (params, batch statistics,
    optimizer state, step, rng, non-finite counters), the state of the other callbacks
    (e.g. :class:`EarlyStopping`'s best params), the history, the seed, the number of
    epochs, whether the run was stopped (early stopping, ``stop_training``) and the
    run's ``settings``. It is written every ``every`` epochs, after the last epoch and
    when the run stops.

    With ``resume`` a run continues from the newest good checkpoint in ``directory``
    and says so in one line (``resumed from DIR/step_N, epoch N of M``): the epoch
    order is a function of ``(seed, epoch)`` and the rng is in the state, so the
    resumed run is bit-identical to an uninterrupted one. The initial state passed to
    ``fit`` is the template (its structure, shapes and dtypes must match). A run that
    was stopped trains no further; a larger ``epochs`` trains on. A checkpoint written
    with another seed or other ``settings`` is refused
    (:class:`~jaxopt_dl.checkpoint.SettingsChangedError`) unless
    ``allow_changed_settings``; the recorded settings are then in :attr:`resumed`.

    Keras's ``save_best_only``: only epochs that improve ``monitor`` are saved (so a
    resume continues from the best epoch so far).

    Args:
      directory: the checkpoint folder.
      every: epochs between checkpoints (a positive integer).
      resume: continue from the newest checkpoint in ``directory``. Without it, a
        folder that already holds checkpoints is refused before training, unless
        ``overwrite``.
      backend: ``"msgpack"`` or ``"orbax"``.
      keep: how many checkpoints to keep, the newest by step (``None``: all).
      monitor: the ``logs`` key that ``save_best_only`` watches.
      mode: ``"min"`` (lower is better), ``"max"``, or ``"auto"`` (``"max"`` for
        accuracies, ``"min"`` otherwise).
      save_best_only: save only the epochs where ``monitor`` improved (an epoch
        without a value, every step skipped as non-finite, is no improvement).
      overwrite: with ``resume=False``, delete the folder's checkpoints at the start
        (start over) instead of refusing.
      settings: a JSON-able dict of the run's settings (optimizer, its
        hyperparameters, model, data, ...), recorded and compared on resume.
      allow_changed_settings: resume even when the seed or ``settings`` differ.
      verbose: print the resume line.

    Attributes:
      resumed: after ``on_train_begin`` of a resumed run, ``{"path", "epoch",
        "epochs", "stopped", "settings", "changes"}`` (the checkpoint, its epoch,
        the epochs and stop of the run that wrote it, its recorded settings and the
        changed ones); ``None`` otherwise.
      best: the best ``monitor`` value so far (``save_best_only``).

    Raises:
      ValueError: (at construction) a bad argument, named with its value; (at the
        start of ``fit``) a folder with checkpoints and ``resume=False`` without
        ``overwrite``, changed settings, or a state that does not match the template.
    """

    def __init__(
        self,
        directory: str,
        every: int = 1,
        resume: bool = True,
        backend: str = "msgpack",
        keep: Optional[int] = 3,
        monitor: str = "val_loss",
        mode: str = "auto",
        save_best_only: bool = False,
        overwrite: bool = False,
        settings: Optional[dict] = None,
        allow_changed_settings: bool = False,
        verbose: bool = True,
    ):
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"directory must be a path, got directory={directory!r}")
        check_int("every", every, 1)
        check_choice("backend", backend, checkpoint.BACKENDS)
        checkpoint.check_keep(keep)
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a logs key (a str), got monitor={monitor!r}")
        check_choice("mode", mode, ("auto", "min", "max"))
        for name, value in (
            ("resume", resume),
            ("save_best_only", save_best_only),
            ("overwrite", overwrite),
            ("allow_changed_settings", allow_changed_settings),
            ("verbose", verbose),
        ):
            check_bool(name, value)
        if settings is not None:
            try:
                json.dumps(settings)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"settings must be a JSON-serializable dict, got settings={settings!r}"
                ) from error
        self.directory, self.every, self.resume = os.fspath(directory), every, resume
        self.backend, self.keep, self.monitor = backend, keep, monitor
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.mode, self.save_best_only, self.overwrite = mode, save_best_only, overwrite
        self.settings, self.allow_changed_settings = settings, allow_changed_settings
        self.verbose = verbose
        self.resumed: Optional[dict] = None
        self.best: Optional[float] = None

    def _stateful(self) -> dict:
        """``{key: callback}`` of the callbacks with progress to save, keyed by class name
        (and a count for repeats), so other callbacks may come and go between runs."""
        stateful = {}
        for cb in self.trainer.callbacks:
            if cb.checkpoint_state() is not None:
                name = type(cb).__name__
                repeats = sum(key.split("#")[0] == name for key in stateful)
                stateful[f"{name}#{repeats}" if repeats else name] = cb
        return stateful

    def _tree_and_info(self) -> tuple[dict, dict]:
        saved = {key: cb.checkpoint_state() for key, cb in self._stateful().items()}
        tree = {"state": self.trainer.state, "callbacks": {k: v[0] for k, v in saved.items()}}
        return tree, {k: v[1] for k, v in saved.items()}

    def checkpoint_state(self):
        if not self.save_best_only:
            return None
        return {}, {"best": self.best}

    def restore_state(self, arrays, info):
        self.best = info["best"]

    def on_train_begin(self, logs=None):
        trainer = self.trainer
        self.resumed = None
        if self.save_best_only and self.monitor.startswith("val_") and not trainer.has_validation:
            raise ValueError(
                f"ModelCheckpoint(monitor={self.monitor!r}) needs val_data, got val_data=None"
            )
        if not self.resume:
            steps = checkpoint.all_steps(self.directory)
            if steps and not self.overwrite:
                raise ValueError(
                    f"ModelCheckpoint(resume=False): directory={self.directory!r} already "
                    f"holds checkpoints of steps {steps}; pass overwrite=True to delete them "
                    "and start over, or resume=True to continue"
                )
            checkpoint.remove_checkpoints(self.directory)
            return
        latest = checkpoint.latest_step(self.directory)
        if latest is None:
            return
        info = checkpoint.checkpoint_metadata(self.directory, latest)["metadata"]
        self._check_settings(info)
        if info["epoch"] > trainer.epochs:
            raise ValueError(
                f"the checkpoint {self._path(latest)} is at epoch {info['epoch']}, past "
                f"epochs={trainer.epochs}; pass epochs >= {info['epoch']} to resume it"
            )
        template, _ = self._tree_and_info()
        saved = checkpoint.restore_checkpoint(self.directory, template, latest)
        for key, cb in self._stateful().items():
            cb.restore_state(saved["callbacks"][key], info["callbacks"][key])
        trainer.state = saved["state"]
        trainer.history = History.from_dict(info["history"])
        trainer.first_epoch = info["epoch"]
        trainer.global_step = info["global_step"]
        stopped = bool(info.get("stopped"))
        if stopped:
            trainer.first_epoch = trainer.epochs  # the stop is part of the run
        self.resumed = {
            "path": self._path(latest),
            "epoch": info["epoch"],
            "epochs": info.get("epochs"),
            "stopped": stopped,
            "settings": info.get("settings"),
            "changes": self._changes(info),
        }
        if self.verbose:
            print(self._resume_line(), flush=True)

    def _path(self, step: int) -> str:
        return os.path.join(self.directory, f"step_{step}")

    def _changes(self, info: dict) -> dict:
        recorded, new = dict(info.get("settings") or {}), dict(self.settings or {})
        if not (info.get("settings") is not None and self.settings is not None):
            recorded, new = {}, {}
        recorded["seed"], new["seed"] = info.get("seed"), self.trainer.seed
        return checkpoint.changed_settings(recorded, new)

    def _check_settings(self, info: dict) -> None:
        changes = self._changes(info)
        if changes and not self.allow_changed_settings:
            raise checkpoint.SettingsChangedError(
                f"the checkpoint in {self.directory!r} was written with other settings: "
                f"{checkpoint.describe_changes(changes)}; pass allow_changed_settings=True "
                "to continue with the new ones",
                changes,
            )

    def _resume_line(self) -> str:
        resumed, epochs = self.resumed, self.trainer.epochs
        line = f"resumed from {resumed['path']}, epoch {resumed['epoch']} of {epochs}"
        if resumed["changes"]:
            changes = checkpoint.describe_changes(resumed["changes"])
            line += f" with changed settings ({changes})"
        if resumed["stopped"]:
            return f"{line}: the run stopped at epoch {resumed['epoch']}; nothing left to train"
        if resumed["epochs"] is not None and resumed["epochs"] < epochs:
            had = resumed["epochs"]
            line += f" (training on: the checkpoint's run had {had} epoch{'s' * (had != 1)})"
        if resumed["epoch"] == epochs:
            line += ": nothing left to train"
        return line

    def _improved(self, epoch: int, logs: dict) -> bool:
        if self.monitor not in logs:
            raise ValueError(
                f"ModelCheckpoint: logs have no {self.monitor!r}, got keys {sorted(logs)}"
            )
        value = logs[self.monitor]
        if value is None or not math.isfinite(value):
            return False
        better = self.best is None or (
            value < self.best if self.mode == "min" else value > self.best
        )
        if better:
            self.best = float(value)
        return better

    def _save(self, done: int) -> None:
        trainer = self.trainer
        tree, callback_info = self._tree_and_info()
        checkpoint.save_checkpoint(
            self.directory,
            tree,
            done,
            backend=self.backend,
            keep=self.keep,
            overwrite=True,  # newer steps here are damaged ones, or a run started over
            metadata={
                "epoch": done,
                "epochs": trainer.epochs,
                "global_step": trainer.global_step,
                "seed": trainer.seed,
                "stopped": trainer.stop_training,
                "settings": self.settings,
                "history": trainer.history.to_dict(),
                "callbacks": callback_info,
            },
        )

    def on_epoch_end(self, epoch, logs=None):
        trainer = self.trainer
        done = epoch + 1
        if self.save_best_only:
            if self._improved(epoch, logs or {}):
                self._save(done)
        elif trainer.stop_training or done == trainer.epochs or done % self.every == 0:
            self._save(done)


class NonFiniteError(RuntimeError):
    """Training hit too many consecutive NaN/Inf steps.

    Attributes:
      message: the error message (``str(error)``).
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


def param_paths(params: Any) -> list[str]:
    """``"layer/kernel"``-style paths of the leaves of ``params``, in tree order.

    Args:
      params: a params tree.

    Returns:
      The paths.
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return [jax.tree_util.keystr(path, simple=True, separator="/") for path, _ in flat]


class NonFiniteGuard(Callback):
    """Raise :class:`NonFiniteError` after ``max_consecutive`` NaN/Inf steps in a row.

    Isolated non-finite steps are skipped bit-exactly inside the step and counted
    (``history.nonfinite_steps``). After ``max_consecutive`` in a row the step freezes
    the state, and at the end of that epoch this callback raises with the step and the
    first layer whose gradient went non-finite; the error carries the last finite state.
    ``fit`` adds ``NonFiniteGuard(5)`` unless one is given.

    Args:
      max_consecutive: consecutive skipped steps that end the run.
    """

    def __init__(self, max_consecutive: int = 5):
        check_int("max_consecutive", max_consecutive, 1)
        self.max_consecutive = max_consecutive

    def on_epoch_end(self, epoch, logs=None):
        trainer = self.trainer
        state = trainer.state
        trainer.history.nonfinite_steps = int(state.nonfinite_total)
        limit = self.max_consecutive
        if int(state.nonfinite_streak) < limit:
            return
        finite = np.asarray(trainer.step_metrics["finite"])
        run, start = 0, 0
        for i, ok in enumerate(finite):
            run = 0 if ok else run + 1
            if run == limit:
                start = i - limit + 1
                break
        step = trainer.global_step - len(finite) + start
        leaf = int(state.nonfinite_leaf)
        layer = param_paths(state.params)[leaf] if leaf >= 0 else None
        where = f"gradient of {layer}" if layer else "loss (gradients finite)"
        message = (
            f"non-finite loss at step {step} (epoch {epoch + 1}): {limit} consecutive steps "
            f"skipped; first non-finite: {where}. The state holds the last finite params."
        )
        raise NonFiniteError(message, step, layer, state, trainer.history)


class PlateauFeeder(Callback):
    """Feed ``reduce_on_plateau`` a monitored epoch metric instead of every batch loss.

    By default every step passes its batch loss to the optimizer as ``value=`` (what
    ``reduce_on_plateau`` watches). With this callback the steps leave the plateau
    state alone and, at the end of each epoch, ``plateau`` is fed ``logs[monitor]``
    (default the validation loss), as Keras's ``ReduceLROnPlateau`` and torch's
    ``ReduceLROnPlateau.step(val_loss)`` do; ``patience`` then counts epochs.

    Args:
      plateau: the ``jdl.reduce_on_plateau(...)`` transform that is part of the
        optimizer (its settings decide when the scale drops).
      monitor: the ``logs`` key fed (default ``"val_loss"``).

    Example:
      >>> import jaxopt_dl as jdl
      >>> plateau = jdl.reduce_on_plateau(factor=0.5, patience=2)
      >>> tx = jdl.chain(jdl.adam(1e-3), plateau)
      >>> feeder = PlateauFeeder(plateau)  # fit(..., callbacks=[feeder])
    """

    def __init__(self, plateau: GradientTransformation, monitor: str = "val_loss"):
        if not hasattr(plateau, "update"):
            raise TypeError(f"plateau must be a reduce_on_plateau transform, got {plateau!r}")
        self.plateau, self.monitor = plateau, monitor

    def on_train_begin(self, logs=None):
        if self.monitor.startswith("val_") and not self.trainer.has_validation:
            raise ValueError(
                f"PlateauFeeder(monitor={self.monitor!r}) needs val_data, got val_data=None"
            )
        self.trainer.feed_step_loss = False

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        state = self.trainer.state

        def feed(node):
            return self.plateau.update({}, node, value=value)[1] if _is_plateau(node) else node

        opt_state = jax.tree.map(feed, state.opt_state, is_leaf=_is_plateau)
        self.trainer.state = state.replace(opt_state=opt_state)
