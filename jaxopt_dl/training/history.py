"""The record of a training run and its plot."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import numpy as np

__all__ = ["History", "plot_history"]


def _plain(value: Any) -> Any:
    """NumPy/JAX scalars and arrays -> Python numbers and lists (NaN/Inf -> None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(np.asarray(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclasses.dataclass
class History:
    """Per-step and per-epoch metrics of :func:`jaxopt_dl.training.fit`.

    Attributes:
      step_loss: training loss of every optimization step (the batch's loss before the
        update; NaN for a skipped non-finite step).
      step_learning_rate: learning rate applied at every step (empty when the optimizer
        state holds none).
      epoch: epoch indices (0-based).
      train_loss, train_accuracy: mean over the epoch's steps.
      val_loss, val_accuracy: on ``val_data`` after each epoch (empty without it).
      batch_size: batch size of each epoch.
      steps_per_epoch: optimization steps of each epoch.
      epoch_time: wall-clock seconds of each epoch (training and evaluation).
      diagnostics: per epoch, a ``{name: value}`` dict from
        :func:`jaxopt_dl.training.diagnostics_step` on the epoch's first batch after
        the epoch (empty unless ``fit(..., diagnostics=True)``).
      best_epoch: epoch whose params were kept by early stopping (``None`` without it).
      stopped_early: whether early stopping ended the run.
      nonfinite_steps: steps skipped because the loss or a gradient was NaN/Inf.
    """

    step_loss: list = dataclasses.field(default_factory=list)
    step_learning_rate: list = dataclasses.field(default_factory=list)
    epoch: list = dataclasses.field(default_factory=list)
    train_loss: list = dataclasses.field(default_factory=list)
    train_accuracy: list = dataclasses.field(default_factory=list)
    val_loss: list = dataclasses.field(default_factory=list)
    val_accuracy: list = dataclasses.field(default_factory=list)
    batch_size: list = dataclasses.field(default_factory=list)
    steps_per_epoch: list = dataclasses.field(default_factory=list)
    epoch_time: list = dataclasses.field(default_factory=list)
    diagnostics: list = dataclasses.field(default_factory=list)
    best_epoch: Optional[int] = None
    stopped_early: bool = False
    nonfinite_steps: int = 0

    def to_dict(self) -> dict:
        """A JSON-serializable dict (Python floats and lists; NaN/Inf become ``None``).

        Example:
          >>> import json
          >>> json.dumps(History(step_loss=[1.0, float("nan")]).to_dict()["step_loss"])
          '[1.0, null]'
        """
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, record: dict) -> "History":
        """The inverse of :meth:`to_dict` (``None`` per-step values become NaN again).

        Example:
          >>> History.from_dict(History(step_loss=[1.0, float("nan")]).to_dict()).step_loss
          [1.0, nan]
        """
        record = dict(record)
        for name in ("step_loss", "step_learning_rate"):
            record[name] = [math.nan if v is None else v for v in record.get(name, [])]
        return cls(**record)


def plot_history(history: History, path: str) -> None:
    """Save loss curves (per step and per epoch), accuracy and learning rate to ``path``.

    Uses matplotlib's non-interactive Agg backend (no display needed).

    Args:
      history: a :class:`History`.
      path: output image file (the extension picks the format, e.g. ``.png``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if history.step_learning_rate else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.8))
    steps_per_epoch = history.steps_per_epoch or [1]
    epoch_end_step = np.cumsum(steps_per_epoch)

    ax = axes[0]
    ax.plot(np.arange(1, len(history.step_loss) + 1), history.step_loss, lw=0.6, alpha=0.5,
            label="train (per step)")
    if history.train_loss:
        ax.plot(epoch_end_step[: len(history.train_loss)], history.train_loss, "o-",
                label="train (epoch mean)")
    if history.val_loss:
        ax.plot(epoch_end_step[: len(history.val_loss)], history.val_loss, "s-", label="validation")
    ax.set(xlabel="step", ylabel="cross-entropy", title="loss", yscale="log")
    ax.legend()

    ax = axes[1]
    if history.train_accuracy:
        ax.plot(history.epoch, history.train_accuracy, "o-", label="train")
    if history.val_accuracy:
        ax.plot(history.epoch[: len(history.val_accuracy)], history.val_accuracy, "s-",
                label="validation")
    ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    if history.train_accuracy:
        ax.legend()

    if panels == 3:
        ax = axes[2]
        ax.plot(np.arange(1, len(history.step_learning_rate) + 1), history.step_learning_rate)
        ax.set(xlabel="step", ylabel="learning rate", title="learning rate")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
