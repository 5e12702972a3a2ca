"""Callbacks that write each epoch's metrics to a file: CSV and TensorBoard.

Both write the epoch number (1-based, as the log line ``Epoch k/N``) and the epoch's
``logs`` under Keras's names (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``,
the other metrics, ``learning_rate``: the rate of the epoch's last step).
"""

from __future__ import annotations

import csv
import math
import os
from typing import Any, Optional

import numpy as np

from jaxopt_dl._core import check_bool
from jaxopt_dl.training.callbacks import Callback

__all__ = ["CSVLogger", "TensorBoard", "epoch_record"]


def epoch_record(logs: dict) -> dict:
    """An epoch's ``logs`` as ``{name: float}`` under Keras's names.

    ``lr`` becomes ``learning_rate`` (``learning_rate/<group>`` per parameter group);
    ``None`` (an epoch whose steps were all skipped as non-finite) becomes NaN.

    Args:
      logs: the epoch's ``logs``.

    Returns:
      The record, in the order of ``logs``.

    Example:
      >>> epoch_record({"loss": 0.5, "lr": {"body": 0.1, "head": 0.01}})
      {'loss': 0.5, 'learning_rate/body': 0.1, 'learning_rate/head': 0.01}
    """
    record = {}
    for key, value in logs.items():
        name = "learning_rate" if key == "lr" else key
        if isinstance(value, dict):
            for group, v in value.items():
                record[f"{name}/{group}"] = math.nan if v is None else float(v)
        elif value is None or isinstance(value, (int, float, np.number)):
            record[name] = math.nan if value is None else float(value)
    return record


class CSVLogger(Callback):
    """Write one CSV row per epoch, as Keras's ``CSVLogger``.

    The columns are ``epoch`` (1-based) and the keys of :func:`epoch_record`, fixed by
    the first epoch written; the header is written when the file is new or empty. A
    row is flushed as soon as its epoch ends, so the file is complete up to the last
    finished epoch even if the run is killed.

    Args:
      filename: the CSV file.
      separator: the field separator.
      append: append to an existing file (else it is overwritten). A run that resumes
        from a checkpoint always appends.

    Example:
      >>> logger = CSVLogger("training.csv")  # fit(..., callbacks=[logger])
    """

    def __init__(self, filename: str, separator: str = ",", append: bool = False):
        if not isinstance(filename, (str, os.PathLike)):
            raise TypeError(f"filename must be a path, got filename={filename!r}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"separator must be one character, got separator={separator!r}")
        check_bool("append", append)
        self.filename, self.separator, self.append = os.fspath(filename), separator, append
        self._file = None
        self._writer = None

    def _open(self) -> None:
        append = self.append or self.trainer.first_epoch > 0
        has_rows = append and os.path.exists(self.filename) and os.path.getsize(self.filename)
        self._file = open(self.filename, "a" if append else "w", newline="")
        self._has_header = bool(has_rows)

    def on_epoch_end(self, epoch, logs=None):
        if self._file is None:
            self._open()
        row = {"epoch": epoch + 1, **epoch_record(logs or {})}
        if self._writer is None:
            self._writer = csv.DictWriter(
                self._file, fieldnames=list(row), delimiter=self.separator, restval="nan"
            )
            if not self._has_header:
                self._writer.writeheader()
        self._writer.writerow({k: v for k, v in row.items() if k in self._writer.fieldnames})
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
        self._file = self._writer = None


class TensorBoard(Callback):
    """Write the run's scalars as TensorBoard event files (needs ``tensorboardX``).

    Installed with the optional extra: ``pip install "jaxopt_dl[tensorboard]"``. Per
    epoch, every scalar of :func:`epoch_record` under its name (``loss``,
    ``val_loss``, ``accuracy``, ``learning_rate``, ...) at step = the epoch number
    (1-based); per optimization step, ``batch_loss`` at step = the number of steps
    attempted so far (skipped non-finite steps are not written). View with
    ``tensorboard --logdir LOG_DIR``.

    Args:
      log_dir: the folder of the event files.
      batch_loss: also write every step's loss.

    Raises:
      ImportError: ``tensorboardX`` is not installed (the message says how to).
    """

    def __init__(self, log_dir: str, batch_loss: bool = True):
        if not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(f"log_dir must be a path, got log_dir={log_dir!r}")
        check_bool("batch_loss", batch_loss)
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise ImportError(
                'TensorBoard needs tensorboardX: pip install "jaxopt_dl[tensorboard]"'
            ) from None
        self.log_dir, self.batch_loss = os.fspath(log_dir), batch_loss
        self.writer: Optional[Any] = None

    def on_train_begin(self, logs=None):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        trainer = self.trainer
        if self.batch_loss and "loss" in trainer.step_metrics:
            losses = np.asarray(trainer.step_metrics["loss"], float)
            finite = np.asarray(trainer.step_metrics["finite"], bool)
            first = trainer.global_step - len(losses) + 1
            for i in np.flatnonzero(finite):
                self.writer.add_scalar("batch_loss", losses[i], first + int(i))
        for name, value in epoch_record(logs or {}).items():
            if math.isfinite(value):
                self.writer.add_scalar(name, value, epoch + 1)
        self.writer.flush()

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()
        self.writer = None
