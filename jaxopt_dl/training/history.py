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
      step_learning_rate: learning rate applied at every step, from
        :func:`jaxopt_dl.current_learning_rate` (a ``{group: rate}`` dict per step for
        an optimizer with several parameter groups; empty when the optimizer has no
        rate).
      learning_rate: per epoch, the rate the next step applies after the epoch (a float
        or a ``{group: rate}`` dict).
      epoch: epoch indices (0-based).
      train_loss: mean loss over the epoch's steps.
      train_accuracy: mean accuracy over the epoch's steps (only for the
        cross-entropy loss).
      val_loss: loss on ``val_data`` after each epoch (empty without it).
      val_accuracy: accuracy on ``val_data`` after each epoch (empty without it).
      batch_size: batch size of each epoch.
      steps_per_epoch: optimization steps of each epoch.
      epoch_time: wall-clock seconds of each epoch (training and evaluation).
      diagnostics: per epoch, a ``{name: value}`` dict from
        :func:`jaxopt_dl.training.diagnostics_step` on the epoch's first batch after
        the epoch (empty unless ``fit(..., config=FitConfig(diagnostics=True))``).
      best_epoch: epoch whose params were kept by early stopping (``None`` without it).
      stopped_early: whether early stopping ended the run.
      nonfinite_steps: steps skipped because the loss or a gradient was NaN/Inf.
    """

    step_loss: list = dataclasses.field(default_factory=list)
    step_learning_rate: list = dataclasses.field(default_factory=list)
    learning_rate: list = dataclasses.field(default_factory=list)
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

        Args:
          record: a dict from :meth:`to_dict`.

        Returns:
          The :class:`History`.
        """
        record = dict(record)
        for name in ("step_loss", "step_learning_rate"):
            record[name] = [math.nan if v is None else v for v in record.get(name, [])]
        return cls(**record)


def _rate_series(rates: list) -> dict:
    """``{label: values}`` of a list of rates (floats, or dicts per parameter group)."""
    if rates and isinstance(rates[0], dict):
        return {f"lr ({group})": [r[group] for r in rates] for group in rates[0]}
    return {"lr": rates}


def plot_history(history: History, path: str) -> None:
    """Save loss curves (per step and per epoch), accuracy and learning rate to ``path``.

    Epoch axes have integer ticks; the learning-rate panel has one line per parameter
    group and a log scale when the rate spans more than a factor of 10. Uses
    matplotlib's non-interactive Agg backend (no display needed).

    Args:
      history: a :class:`History`.
      path: output image file (the extension picks the format, e.g. ``.png``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    has_accuracy = bool(history.train_accuracy or history.val_accuracy)
    has_rate = bool(history.step_learning_rate)
    panels = 1 + has_accuracy + has_rate
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.8), squeeze=False)
    axes = list(axes[0])
    steps_per_epoch = history.steps_per_epoch or [1]
    # Per-step curves share the epoch axis: step k (0-based) of epoch e ends at
    # e + (k + 1) / steps, so the epoch's last step sits on the integer tick e + 1.
    step_epoch = np.concatenate(
        [
            e + np.arange(1, n + 1) / n
            for e, n in zip(history.epoch or [0], steps_per_epoch, strict=False)
        ]
    )
    epoch_end = np.asarray(history.epoch, float) + 1

    ax = axes.pop(0)
    ax.plot(
        step_epoch[: len(history.step_loss)],
        history.step_loss,
        lw=0.6,
        alpha=0.5,
        label="train (per step)",
    )
    if history.train_loss:
        ax.plot(
            epoch_end[: len(history.train_loss)],
            history.train_loss,
            "o-",
            label="train (epoch mean)",
        )
    if history.val_loss:
        ax.plot(epoch_end[: len(history.val_loss)], history.val_loss, "s-", label="validation")
    losses = np.asarray(history.step_loss, float)
    losses = losses[np.isfinite(losses)]
    ax.set(
        xlabel="epoch",
        ylabel="loss",
        title="loss",
        yscale="log" if losses.size and losses.min() > 0 else "linear",
    )
    ax.legend()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))

    if has_accuracy:
        ax = axes.pop(0)
        if history.train_accuracy:
            ax.plot(
                epoch_end[: len(history.train_accuracy)],
                history.train_accuracy,
                "o-",
                label="train",
            )
        if history.val_accuracy:
            ax.plot(
                epoch_end[: len(history.val_accuracy)],
                history.val_accuracy,
                "s-",
                label="validation",
            )
        ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
        ax.legend()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))

    if has_rate:
        ax = axes.pop(0)
        spans, top = [], 0.0
        for label, series in _rate_series(history.step_learning_rate).items():
            values = np.asarray(series, float)
            ax.plot(step_epoch[: len(values)], values, label=label)
            positive = values[values > 0]
            if positive.size:
                spans.append(positive.max() / positive.min())
                top = max(top, positive.max())
        if spans and max(spans) > 10:
            ax.set_yscale("log")
        else:
            ax.set_ylim(0, 1.1 * top if top else None)
            ax.yaxis.set_major_formatter(FormatStrFormatter("%.1e"))
        ax.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
        ax.legend()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
