"""Curriculum learning: easy examples first, the pool widening on a pacing schedule."""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_dl._core import check_choice, check_in_range, check_int, check_positive
from jaxopt_dl.training.state import TrainState
from jaxopt_dl.training.steps import predict, softmax_cross_entropy

__all__ = ["CurriculumSampler", "linear_pacing", "baby_steps", "example_scores"]

Pacing = Callable[[int], float]


def linear_pacing(start_fraction: float = 0.2, epochs_to_full: int = 10) -> Pacing:
    """Fraction of the data available at ``epoch``, growing linearly to 1.

    .. math:: \\lambda(e) = \\min(1, \\lambda_0 + (1 - \\lambda_0)\\, e / E)

    Args:
      start_fraction: ``lambda_0``, the fraction available at epoch 0, in (0, 1]
        (default 0.2).
      epochs_to_full: ``E``, the epoch from which all the data is used (default 10).

    Example:
      >>> p = linear_pacing(0.2, 4)
      >>> [p(e) for e in (0, 1, 4, 9)]
      [0.2, 0.4, 1.0, 1.0]
    """
    check_in_range("start_fraction", start_fraction, 0.0, 1.0)
    check_positive("start_fraction", start_fraction)
    check_positive("epochs_to_full", epochs_to_full)

    def pacing(epoch: int) -> float:
        return min(1.0, start_fraction + (1.0 - start_fraction) * epoch / epochs_to_full)

    return pacing


def baby_steps(num_stages: int, epochs_per_stage: int) -> Pacing:
    """ "Baby steps" pacing: the pool grows by ``1 / num_stages`` every ``epochs_per_stage``.

    .. math:: \\lambda(e) = \\min(1, (1 + \\lfloor e / K \\rfloor) / S)

    Args:
      num_stages: ``S``, the number of equal steps to the whole data set.
      epochs_per_stage: ``K``, the epochs spent at each stage.

    Example:
      >>> p = baby_steps(4, 2)
      >>> [p(e) for e in range(0, 10, 2)]
      [0.25, 0.5, 0.75, 1.0, 1.0]

    References:
      Spitkovsky, Alshawi & Jurafsky 2010, "From Baby Steps to Leapfrog".
    """
    check_int("num_stages", num_stages, 1)
    check_int("epochs_per_stage", epochs_per_stage, 1)

    def pacing(epoch: int) -> float:
        return min(1.0, (1 + epoch // epochs_per_stage) / num_stages)

    return pacing


class CurriculumSampler:
    """Draws each epoch's examples from the easiest ``ceil(pacing(epoch) * n)`` examples.

    Examples are ranked by ``scores`` (low = easy, e.g. a reference model's loss — see
    :func:`example_scores`). At epoch ``e`` the pool is the ``ceil(lambda(e) n)`` easiest;
    an epoch is ``epoch_size`` draws (default ``n``) cycling through fresh shuffles of the
    pool, so every epoch has the same number of steps and ``fit`` compiles once. With
    ``order="easy_first"`` the pool is visited easy-to-hard instead of shuffled.

    Use as ``fit(..., config=FitConfig(sampler=CurriculumSampler(scores, pacing)))``.

    Args:
      scores: ``(n,)`` difficulty of every training example.
      pacing: ``epoch -> fraction`` in (0, 1], e.g. :func:`linear_pacing`, :func:`baby_steps`.
      epoch_size: examples drawn per epoch.
      order: ``"shuffle"`` or ``"easy_first"``.

    Example:
      >>> import numpy as np
      >>> s = CurriculumSampler(np.array([3., 1., 2., 0.]), baby_steps(2, 1), epoch_size=4)
      >>> s.pool(0).tolist(), s.pool(1).tolist()
      ([3, 1], [3, 1, 2, 0])
      >>> sorted(s(0, np.random.default_rng(0)).tolist())
      [1, 1, 3, 3]

    References:
      Bengio, Louradour, Collobert & Weston 2009, "Curriculum Learning"; Hacohen &
      Weinshall 2019 (pacing functions, scoring by a reference model).
    """

    def __init__(
        self,
        scores: np.typing.ArrayLike,
        pacing: Pacing,
        *,
        epoch_size: int | None = None,
        order: str = "shuffle",
    ):
        scores = np.asarray(scores, np.float64)
        if scores.ndim != 1 or not len(scores):
            raise ValueError(f"scores must be a non-empty 1-D array, got shape {scores.shape}")
        check_choice("order", order, ("shuffle", "easy_first"))
        self.order_by_score = np.argsort(scores, kind="stable")
        self.scores = scores
        self.pacing = pacing
        self.epoch_size = len(scores) if epoch_size is None else epoch_size
        check_int("epoch_size", self.epoch_size, 1)
        self.order = order

    def pool_size(self, epoch: int) -> int:
        """``ceil(pacing(epoch) * n)``, at least 1 and at most ``n``.

        Args:
          epoch: the epoch index (0-based).
        """
        fraction = float(self.pacing(epoch))
        if not 0 < fraction <= 1:
            raise ValueError(
                f"pacing must return a fraction in (0, 1], got {fraction} at epoch={epoch}"
            )
        n = len(self.scores)
        return min(n, max(1, math.ceil(fraction * n - 1e-9)))

    def pool(self, epoch: int) -> np.ndarray:
        """Indices of the examples available at ``epoch``, easiest first.

        Args:
          epoch: the epoch index (0-based).
        """
        return self.order_by_score[: self.pool_size(epoch)]

    def __call__(self, epoch: int, rng: np.random.Generator) -> np.ndarray:
        pool = self.pool(epoch)
        repeats = -(-self.epoch_size // len(pool))
        if self.order == "easy_first":
            drawn = np.tile(pool, repeats)
        else:
            drawn = np.concatenate([rng.permutation(pool) for _ in range(repeats)])
        return drawn[: self.epoch_size]


@jax.jit
def _scores(state: TrainState, x, y):
    logits = predict(state, x)
    loss = softmax_cross_entropy(logits, y)
    true = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
    other = jnp.max(jnp.where(jax.nn.one_hot(y, logits.shape[-1]) > 0, -jnp.inf, logits), -1)
    return loss, other - true


def example_scores(state: TrainState, data: tuple, kind: str = "loss") -> np.ndarray:
    """Difficulty of each example under a (reference) model, for :class:`CurriculumSampler`.

    ``kind="loss"``: the cross-entropy ``-log p(y|x)``; ``kind="margin"``: the negative
    margin ``max_{k != y} z_k - z_y`` (positive for misclassified examples). Both are low
    for easy examples. Evaluated with ``train=False``.

    Args:
      state: a :class:`TrainState` of the (reference) model that scores the examples.
      data: ``(x, y)`` arrays, ``y`` integer labels.
      kind: ``"loss"`` (default) or ``"margin"``.

    Returns:
      ``(n,)`` float scores.
    """
    check_choice("kind", kind, ("loss", "margin"))
    loss, neg_margin = _scores(state, jnp.asarray(data[0]), jnp.asarray(data[1]))
    return np.asarray(loss if kind == "loss" else neg_margin)
