"""The learning-rate range test, as ONE vmapped program over a grid of rates.

K. Bipin's "Deep Learning, Lecture 6 — Optimization" (How to Start) says to "choose a
good learning rate (0.1, 0.01, 0.001, ...)" by trying rates on a log scale, and its
debugging list ("Increase/Decrease Learning Rate") to multiply the rate by 0.1 or 10.
:func:`lr_find` does that search in one compiled program: every rate of a log-spaced
grid trains the same initial model on the same minibatches for a few steps,
``jax.vmap`` runs all of them at once, and the final losses give the curve
loss-versus-rate. :func:`lr_ramp` is the sequential test of Smith (2017) as Lightning's
``lr_find`` runs it (one run whose rate grows exponentially every step), kept as the
baseline the benchmark compares against.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_dl._core import GradientTransformation, check_positive
from jaxopt_dl.training.loop import epoch_indices
from jaxopt_dl.training.modules import check_linen
from jaxopt_dl.training.state import create_train_state
from jaxopt_dl.training.steps import cross_entropy, train_step, train_step_fn

__all__ = [
    "RULES",
    "LRFindResult",
    "LRRampResult",
    "lr_find",
    "lr_ramp",
    "suggest_learning_rate",
    "plot_lr_find",
]

RULES = ("min_loss_div_10", "steepest")
"""How a rate is suggested from the loss-versus-rate curve.

* ``"min_loss_div_10"``: the rate of the lowest final loss, divided by 10 (fast.ai's
  rule: the best short-run rate sits just below divergence, so one decade lower is
  safe for a full run).
* ``"steepest"``: the rate where the loss falls fastest per decade
  (``argmin d loss / d log10 lr`` before the minimum; Lightning's rule).
"""


@dataclasses.dataclass(frozen=True)
class LRFindResult:
    """The outcome of :func:`lr_find`.

    Attributes:
      learning_rates: the grid, ``(num,)``.
      final_loss: mean loss of each run's final params on the evaluation data
        (``nan`` for a run that met a non-finite loss or gradient), ``(num,)``.
      losses: the training loss of every step of every run, ``(num, steps)``.
      diverged: runs that met a non-finite value or ended above their initial loss.
      initial_loss: the loss of the shared initial params on the evaluation data.
      suggestion: the suggested rate (``nan`` when no run decreased the loss).
      rule: the rule that gave ``suggestion`` (one of :data:`RULES`).
      suggestions: ``{rule: rate}`` for every rule of :data:`RULES`.
      seconds: wall time of the program (compilation included the first time a model
        and optimizer factory are seen).
    """

    learning_rates: np.ndarray
    final_loss: np.ndarray
    losses: np.ndarray
    diverged: np.ndarray
    initial_loss: float
    suggestion: float
    rule: str
    suggestions: dict
    seconds: float

    def to_dict(self) -> dict:
        """A JSON-ready dict (lists and floats; ``nan`` becomes ``None``)."""

        def clean(values):
            return [None if not math.isfinite(v) else float(v) for v in np.ravel(values)]

        return {
            "learning_rates": clean(self.learning_rates),
            "final_loss": clean(self.final_loss),
            "diverged": [bool(d) for d in self.diverged],
            "initial_loss": self.initial_loss,
            "suggestion": clean([self.suggestion])[0],
            "rule": self.rule,
            "rule_description": _RULE_TEXT[self.rule],
            "suggestions": {k: clean([v])[0] for k, v in self.suggestions.items()},
            "seconds": self.seconds,
            "steps": int(self.losses.shape[1]),
        }


@dataclasses.dataclass(frozen=True)
class LRRampResult:
    """The outcome of :func:`lr_ramp` (the sequential range test).

    Attributes:
      learning_rates: the rate of each step taken.
      losses: the exponentially smoothed training loss after each step.
      suggestion: the rate of the steepest descent of the smoothed loss.
      seconds: wall time, compilation included.
    """

    learning_rates: np.ndarray
    losses: np.ndarray
    suggestion: float
    seconds: float


_RULE_TEXT = {
    "min_loss_div_10": "rate of the lowest final loss divided by 10",
    "steepest": "rate of the steepest descent of the final loss per decade of rate",
}


def suggest_learning_rate(
    learning_rates: Any, losses: Any, rule: str = "min_loss_div_10", skip_begin: int = 0
) -> float:
    """A learning rate read off a loss-versus-rate curve.

    Args:
      learning_rates: increasing rates, ``(n,)``.
      losses: the loss at each rate, ``(n,)``; non-finite entries are ignored.
      rule: ``"min_loss_div_10"`` or ``"steepest"`` (see :data:`RULES`).
      skip_begin: leading points ignored by ``"steepest"`` (Lightning skips 10 of a
        noisy ramp).

    Returns:
      The suggested rate, or ``nan`` when fewer than two finite points remain.

    Example:
      >>> suggest_learning_rate([1e-3, 1e-2, 1e-1, 1.0], [2.0, 1.0, 0.5, 3.0])
      0.01
      >>> suggest_learning_rate([1e-3, 1e-2, 1e-1, 1.0], [2.0, 1.0, 0.5, 3.0], "steepest")
      0.001
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got rule={rule!r}")
    lrs = np.asarray(learning_rates, np.float64)
    loss = np.asarray(losses, np.float64)
    finite = np.isfinite(loss)
    if finite.sum() < 2:
        return float("nan")
    best = int(np.nanargmin(np.where(finite, loss, np.nan)))
    if rule == "min_loss_div_10":
        return float(lrs[best] / 10)
    keep = np.flatnonzero(finite[: best + 1])
    keep = keep[keep >= min(skip_begin, max(0, len(keep) - 2))]
    if len(keep) < 2:
        return float(lrs[best])
    slope = np.gradient(loss[keep], np.log10(lrs[keep]))
    return float(lrs[keep[int(np.argmin(slope))]])


def _check_grid(min_lr: float, max_lr: float, num: int) -> None:
    check_positive("min_lr", min_lr)
    if not max_lr > min_lr:
        raise ValueError(f"max_lr must be larger than min_lr={min_lr!r}, got max_lr={max_lr!r}")
    if isinstance(num, bool) or not isinstance(num, int) or num < 2:
        raise ValueError(f"num must be an integer >= 2, got num={num!r}")


def _step_indices(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """``(steps, batch_size)`` indices: shuffled epochs, back to back."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch_size must be at most {n} (the examples), got {batch_size}")
    epochs = -(-steps // per_epoch)
    chunks = [epoch_indices(n, batch_size, seed, epoch)[0] for epoch in range(epochs)]
    return np.concatenate(chunks)[:steps]


def _mean_loss(state, params, x, y):
    variables = state.variables(params)
    logits = state.apply_fn(variables, x, train=False)
    loss_sum, _, weight = cross_entropy(logits, y)
    return loss_sum / weight


@functools.lru_cache(maxsize=16)
def _compiled_grid(model: Any, optimizer: Callable[[Any], GradientTransformation]):
    """``jit(vmap(one run))`` over rates, cached so a repeated test reuses the program."""

    def one(lr, key_data, x, y, ex, ey, indices):
        key = jax.random.wrap_key_data(key_data)
        state = create_train_state(model, optimizer(lr), key, x[:1])
        initial = _mean_loss(state, state.params, ex, ey)

        def step(state, idx):
            state, metrics = train_step_fn(state, (x[idx], y[idx]))
            return state, jnp.where(metrics["finite"], metrics["loss"], jnp.nan)

        state, losses = jax.lax.scan(step, state, indices)
        final = _mean_loss(state, state.params, ex, ey)
        bad = (state.nonfinite_total > 0) | ~jnp.isfinite(final)
        return initial, jnp.where(bad, jnp.nan, final), losses, bad

    return jax.jit(jax.vmap(one, in_axes=(0, None, None, None, None, None, None)))


def lr_find(
    model: Any,
    train_data: tuple,
    optimizer: Callable[[Any], GradientTransformation],
    *,
    min_lr: float = 1e-5,
    max_lr: float = 1.0,
    num: int = 24,
    steps: int = 100,
    batch_size: int = 64,
    seed: int = 0,
    eval_data: Optional[tuple] = None,
    rule: str = "min_loss_div_10",
) -> LRFindResult:
    """The learning-rate range test as one ``jit(vmap(...))`` program over a rate grid.

    Every rate of ``geomspace(min_lr, max_lr, num)`` trains the same initial model
    (``create_train_state(model, optimizer(lr), key(seed), ...)``) on the same
    ``steps`` minibatches; the runs are independent (no rate schedule inside a run)
    and execute together under ``jax.vmap``. Each run's final params are scored by
    the mean loss on ``eval_data``; a run that met a NaN/Inf is marked diverged.
    The curve final-loss-versus-rate is U-shaped: too small a rate barely moves, too
    large a one diverges; the suggestion is read off it with ``rule``.

    Compared with the sequential ramp (:func:`lr_ramp`), each point of the curve is a
    real short training run at a constant rate, not one step of a run whose rate keeps
    changing, and the whole grid costs one compiled program.

    Args:
      model: a Linen module giving logits (e.g. ``jaxopt_dl.models.MLP()``), with or
        without a ``train`` argument (see :func:`jaxopt_dl.training.model_apply`).
      train_data: ``(x, y)`` with integer labels.
      optimizer: ``learning_rate -> GradientTransformation``, e.g. ``jdl.adam`` or
        ``lambda lr: jdl.sgd(lr, momentum=0.9)``; called with a traced rate.
      min_lr: the smallest rate, positive.
      max_lr: the largest rate, above ``min_lr``.
      num: rates in the grid (log-spaced), at least 2.
      steps: training steps of each run, positive.
      batch_size: examples per step.
      seed: seed of the initialization and of the minibatch order.
      eval_data: ``(x, y)`` that scores the final params (default: ``train_data``).
      rule: how the suggestion is chosen, one of :data:`RULES`.

    Returns:
      An :class:`LRFindResult`.

    Example:
      >>> import jaxopt_dl as jdl
      >>> (x, y), _ = jdl.data.load_digits()
      >>> res = jdl.lr_find(jdl.models.MLP(hidden=(32,)), (x, y), jdl.adam,
      ...                   min_lr=1e-4, max_lr=1.0, num=5, steps=20)
      >>> res.final_loss.shape, res.rule
      ((5,), 'min_loss_div_10')

    References:
      Smith 2017, Cyclical Learning Rates for Training Neural Networks (the range test);
      K. Bipin, "Deep Learning, Lecture 6 — Optimization" (How to Start; Debugging
      Strategies).
    """
    import time

    check_linen(model)
    _check_grid(min_lr, max_lr, num)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got steps={steps!r}")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got rule={rule!r}")
    x, y = (jnp.asarray(a) for a in train_data)
    ex, ey = (x, y) if eval_data is None else tuple(jnp.asarray(a) for a in eval_data)
    indices = jnp.asarray(_step_indices(x.shape[0], batch_size, steps, seed))
    lrs = np.geomspace(min_lr, max_lr, num)
    key_data = jax.random.key_data(jax.random.key(seed))
    start = time.perf_counter()
    initial, final, losses, bad = jax.device_get(
        _compiled_grid(model, optimizer)(
            jnp.asarray(lrs, jnp.float32), key_data, x, y, ex, ey, indices
        )
    )
    seconds = time.perf_counter() - start
    initial_loss = float(initial[0])
    final = np.asarray(final, np.float64)
    diverged = np.asarray(bad) | ~(final < initial_loss)
    usable = np.where(diverged, np.nan, final)
    suggestions = {r: suggest_learning_rate(lrs, usable, r) for r in RULES}
    return LRFindResult(
        learning_rates=lrs,
        final_loss=final,
        losses=np.asarray(losses, np.float64),
        diverged=diverged,
        initial_loss=initial_loss,
        suggestion=suggestions[rule],
        rule=rule,
        suggestions=suggestions,
        seconds=seconds,
    )


@functools.lru_cache(maxsize=16)
def _ramp_optimizer(optimizer, min_lr: float, ratio: float) -> GradientTransformation:
    """The ramp's optimizer, one object per setting so the jitted step is reused."""
    return optimizer(lambda count: min_lr * jnp.exp(ratio * count))


def lr_ramp(
    model: Any,
    train_data: tuple,
    optimizer: Callable[[Any], GradientTransformation],
    *,
    min_lr: float = 1e-5,
    max_lr: float = 1.0,
    num: int = 100,
    batch_size: int = 64,
    seed: int = 0,
    smoothing: float = 0.98,
    diverge_threshold: float = 4.0,
) -> LRRampResult:
    """The sequential range test (Smith 2017) as PyTorch Lightning's ``lr_find`` runs it.

    One run of ``num`` steps whose rate grows exponentially from ``min_lr`` to
    ``max_lr`` (``optimizer`` gets the schedule), a Python loop of jitted steps. The
    loss is smoothed as ``s_t = beta s + (1 - beta) L_t`` with bias correction
    ``s_t / (1 - beta^t)``; the run stops once the smoothed loss exceeds
    ``diverge_threshold`` times its best. The suggestion is the rate of the steepest
    descent of the smoothed loss (skipping the first 10 steps), Lightning's rule.

    Args:
      model: a flax module (see :func:`lr_find`).
      train_data: ``(x, y)`` with integer labels.
      optimizer: ``learning_rate -> GradientTransformation`` accepting a schedule.
      min_lr: the first rate, positive.
      max_lr: the last rate, above ``min_lr``.
      num: steps (one per rate), at least 2.
      batch_size: examples per step.
      seed: seed of the initialization and of the minibatch order.
      smoothing: ``beta`` of the loss smoothing, in [0, 1).
      diverge_threshold: stop when the smoothed loss exceeds this multiple of its best.

    Returns:
      An :class:`LRRampResult`.

    References:
      Smith 2017, Cyclical Learning Rates for Training Neural Networks; PyTorch
      Lightning, ``Tuner.lr_find``.
    """
    import time

    check_linen(model)
    _check_grid(min_lr, max_lr, num)
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got smoothing={smoothing!r}")
    check_positive("diverge_threshold", diverge_threshold)
    start = time.perf_counter()
    x, y = np.asarray(train_data[0]), np.asarray(train_data[1])
    indices = _step_indices(len(x), batch_size, num, seed)
    ratio = math.log(max_lr / min_lr) / (num - 1)
    tx = _ramp_optimizer(optimizer, min_lr, ratio)
    state = create_train_state(model, tx, jax.random.key(seed), x[:1])
    lrs, smoothed, average, best = [], [], 0.0, float("inf")
    for t, idx in enumerate(indices):
        state, metrics = train_step(state, (x[idx], y[idx]))
        loss = float(metrics["loss"])
        average = smoothing * average + (1 - smoothing) * loss
        value = average / (1 - smoothing ** (t + 1))
        lrs.append(min_lr * math.exp(ratio * t))
        smoothed.append(value)
        if not math.isfinite(value) or value > diverge_threshold * best:
            break
        best = min(best, value)
    seconds = time.perf_counter() - start
    lrs, smoothed = np.asarray(lrs), np.asarray(smoothed)
    finite = np.isfinite(smoothed)
    suggestion = float("nan")
    if finite.sum() > 11:
        keep = np.flatnonzero(finite)[10:-1] if finite.sum() > 12 else np.flatnonzero(finite)
        slope = np.gradient(smoothed[keep])
        suggestion = float(lrs[keep[int(np.argmin(slope))]])
    return LRRampResult(lrs, smoothed, suggestion, seconds)


def plot_lr_find(result: LRFindResult, path: str) -> None:
    """Save the loss-versus-rate curve (log x) with the suggestion marked.

    Args:
      result: an :class:`LRFindResult`.
      path: the image file to write (e.g. ``lr_find.png``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ok = ~result.diverged
    ax.plot(result.learning_rates[ok], result.final_loss[ok], "o-", label="final loss")
    if result.diverged.any():
        top = np.nanmax(
            np.where(np.isfinite(result.final_loss), result.final_loss, result.initial_loss)
        )
        ax.plot(
            result.learning_rates[~ok],
            np.full((~ok).sum(), max(top, result.initial_loss)),
            "x",
            color="tab:red",
            label="diverged / no progress",
        )
    ax.axhline(result.initial_loss, color="gray", ls=":", label="initial loss")
    if math.isfinite(result.suggestion):
        ax.axvline(
            result.suggestion,
            color="tab:green",
            ls="--",
            label=f"suggested {result.suggestion:.2g} ({_RULE_TEXT[result.rule]})",
        )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"loss after {result.losses.shape[1]} steps")
    ax.set_title("learning-rate range test (one vmapped run per rate)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
