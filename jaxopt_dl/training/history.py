"""The record of a training run and its plot.

Epochs are numbered from 1 in everything a run reports: the log line ``Epoch 3/10``,
``History.epoch``, ``History.best_epoch``, :class:`~jaxopt_dl.training.CSVLogger`'s
``epoch`` column and the TensorBoard step all call that epoch 3. (Callback hooks
receive Keras's 0-based index: ``on_epoch_end(2, logs)`` ends epoch 3.)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import numpy as np

__all__ = ["History", "best_epoch", "plot_history"]


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
      learning_rate: per epoch, the rate the epoch's last step applied (a float or a
        ``{group: rate}`` dict; ``None`` when the optimizer has no rate).
      epoch: the epoch numbers (1-based, as in the log line ``Epoch k/N``).
      train_loss: mean loss over the epoch's steps.
      train_accuracy: mean accuracy over the epoch's steps (only for the
        cross-entropy loss).
      val_loss: loss on ``val_data`` after each epoch (empty without it).
      val_accuracy: accuracy on ``val_data`` after each epoch (empty without it).
      metrics: the other metrics of ``fit(..., metrics=...)`` per epoch,
        ``{name: [...], "val_" + name: [...]}``.
      batch_size: batch size of each epoch.
      steps_per_epoch: optimization steps of each epoch.
      epoch_time: wall-clock seconds of each epoch (training and evaluation).
      diagnostics: per epoch, a ``{name: value}`` dict from
        :func:`jaxopt_dl.training.diagnostics_step` on the epoch's first batch after
        the epoch (empty unless ``fit(..., config=FitConfig(diagnostics=True))``).
      best_epoch: the number (1-based) of the epoch whose params early stopping kept
        (``None`` without it).
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
    metrics: dict = dataclasses.field(default_factory=dict)
    batch_size: list = dataclasses.field(default_factory=list)
    steps_per_epoch: list = dataclasses.field(default_factory=list)
    epoch_time: list = dataclasses.field(default_factory=list)
    diagnostics: list = dataclasses.field(default_factory=list)
    best_epoch: Optional[int] = None
    stopped_early: bool = False
    nonfinite_steps: int = 0

    @property
    def history(self) -> dict:
        """Keras's ``History.history``: ``{name: per-epoch list}`` of what was recorded.

        Keys as in Keras: ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, the
        other metrics (``name`` and ``val_name``) and ``learning_rate``; a key is
        present when its list is not empty. The lists are the attributes themselves.

        Example:
          >>> History(train_loss=[0.9, 0.5], val_loss=[1.0, 0.7]).history
          {'loss': [0.9, 0.5], 'val_loss': [1.0, 0.7]}
        """
        named = {
            "loss": self.train_loss,
            "accuracy": self.train_accuracy,
            "val_loss": self.val_loss,
            "val_accuracy": self.val_accuracy,
            **self.metrics,
            "learning_rate": self.learning_rate,
        }
        if not any(rate is not None for rate in self.learning_rate):
            del named["learning_rate"]
        return {key: values for key, values in named.items() if values}

    def record(self, name: str, value: Any) -> None:
        """Append an epoch's value of a metric under its ``logs`` name.

        Args:
          name: ``"accuracy"``, ``"val_loss"``, ``"val_accuracy"`` or another metric's
            name (``"mae"``, ``"val_mae"``, ...).
          value: the epoch's value (``None`` when no step of the epoch was finite).
        """
        attribute = {
            "accuracy": "train_accuracy",
            "val_loss": "val_loss",
            "val_accuracy": "val_accuracy",
        }.get(name)
        if attribute is not None:
            getattr(self, attribute).append(value)
        else:
            self.metrics.setdefault(name, []).append(value)

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


def best_epoch(history: History) -> Optional[int]:
    """The epoch number (1-based) to mark as the best one.

    Early stopping's ``history.best_epoch`` when set; else the epoch of the lowest
    validation loss, else of the lowest training loss; ``None`` for an empty history.

    Args:
      history: a :class:`History`.

    Returns:
      The epoch number.

    Example:
      >>> best_epoch(History(epoch=[1, 2, 3], train_loss=[0.9, 0.4, 0.6]))
      2
    """
    if history.best_epoch is not None:
        return history.best_epoch
    for losses in (history.val_loss, history.train_loss):
        values = np.asarray([np.nan if v is None else v for v in losses], float)
        if values.size and np.isfinite(values).any():
            return history.epoch[int(np.nanargmin(values))]
    return None


def plot_history(history: History, path: Optional[str] = None) -> Any:
    """Loss curves (per step and per epoch), metrics and learning rate; the best epoch marked.

    Epoch axes have integer ticks (epoch ``k`` ends at ``k``); a dotted vertical line
    marks :func:`best_epoch` on every panel. The learning-rate panel shows the rate of
    every step (one line per parameter group, a log scale when it spans more than a
    factor of 10) and, as dots at the epoch ends, the per-epoch rate that the log line
    and ``History.learning_rate`` report (the epoch's last step's). Draws on a
    ``matplotlib.figure.Figure`` without pyplot, so no backend or display is needed.

    Args:
      history: a :class:`History`.
      path: also save the figure there (the extension picks the format, e.g. ``.png``);
        ``None`` only returns it.

    Returns:
      The ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    metric_names = [n for n in history.metrics if not n.startswith("val_")]
    has_accuracy = bool(history.train_accuracy or history.val_accuracy)
    has_rate = bool(history.step_learning_rate)
    panels = 1 + has_accuracy + len(metric_names) + has_rate
    fig = Figure(figsize=(5 * panels, 3.8))
    axes = list(fig.subplots(1, panels, squeeze=False)[0])
    steps_per_epoch = history.steps_per_epoch or [1]
    # Per-step curves share the epoch axis: step k (0-based) of epoch number e ends at
    # e - 1 + (k + 1) / steps, so the epoch's last step sits on the integer tick e.
    step_epoch = np.concatenate(
        [
            e - 1 + np.arange(1, n + 1) / n
            for e, n in zip(history.epoch or [1], steps_per_epoch, strict=False)
        ]
    )
    epoch_end = np.asarray(history.epoch, float)
    best = best_epoch(history)

    def finish(ax, ylabel):
        if best is not None:
            ax.axvline(best, color="gray", ls=":", lw=1, label=f"best epoch ({best})")
        ax.set(xlabel="epoch", ylabel=ylabel, title=ylabel)
        ax.legend(fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))

    def per_epoch(ax, values, style, label):
        if values:
            y = [np.nan if v is None else v for v in values]
            ax.plot(epoch_end[: len(y)], y, style, label=label)

    ax = axes.pop(0)
    ax.plot(
        step_epoch[: len(history.step_loss)],
        history.step_loss,
        lw=0.6,
        alpha=0.5,
        label="train (per step)",
    )
    per_epoch(ax, history.train_loss, "o-", "train (epoch mean)")
    per_epoch(ax, history.val_loss, "s-", "validation")
    losses = np.asarray(history.step_loss, float)
    losses = losses[np.isfinite(losses)]
    ax.set_yscale("log" if losses.size and losses.min() > 0 else "linear")
    finish(ax, "loss")

    for name, train, val in [("accuracy", history.train_accuracy, history.val_accuracy)][
        : int(has_accuracy)
    ] + [(n, history.metrics[n], history.metrics.get(f"val_{n}", [])) for n in metric_names]:
        ax = axes.pop(0)
        per_epoch(ax, train, "o-", "train")
        per_epoch(ax, val, "s-", "validation")
        finish(ax, name)

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
        rates = [r for r in history.learning_rate if r is not None]
        if len(rates) == len(history.learning_rate):
            for label, series in _rate_series(rates).items():
                ax.plot(epoch_end[: len(series)], series, "o", ms=4, label=f"{label}, epoch")
        if spans and max(spans) > 10:
            ax.set_yscale("log")
        else:
            ax.set_ylim(0, 1.1 * top if top else None)
            ax.yaxis.set_major_formatter(FormatStrFormatter("%.1e"))
        finish(ax, "learning rate")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
