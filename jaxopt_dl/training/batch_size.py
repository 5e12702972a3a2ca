"""Batch-size schedules (epoch -> batch size), read by the training loop once per epoch.

Learning rate vs batch size (K. Bipin, "Deep Learning, Lecture 6 — Optimization":
"smaller batch sizes lead to larger variance in the gradients"): the minibatch-gradient
noise has covariance ``Sigma / B`` for batch size ``B``, so one SGD step adds noise of
covariance ``eps**2 Sigma / B``; over a fixed distance travelled (``eps`` times the
number of steps) the injected variance is proportional to ``eps / B``. Dividing the
learning rate by ``k`` and multiplying the batch size by ``k`` therefore reduce the noise
alike ("decay lr by k ~ grow the batch by k", Smith et al. 2018), and the schedules below
are the drop-in alternative to a decaying learning rate, with fewer,
cheaper-per-example steps.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

from jaxopt_dl._core import check_finite, check_in_range, check_int

BatchSizeSchedule = Callable[[int], int]
"""A function ``epoch -> batch size`` (plain Python: the training loop reads it per epoch)."""

__all__ = [
    "BatchSizeSchedule",
    "constant_batch_size",
    "step_doubling_batch_size",
    "geometric_batch_size",
]


def _check_epoch(epoch: int) -> None:
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative int, got epoch={epoch!r}")


def _check_batch_size(name: str, value: int) -> None:
    check_int(name, value, 1)
    if not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {name}={value!r}")


def constant_batch_size(batch_size: int) -> BatchSizeSchedule:
    """The same batch size every epoch.

    .. math:: B_e = B

    Args:
      batch_size: ``B``, a positive int.

    Returns:
      A function ``epoch -> batch size``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> jdl.constant_batch_size(64)(10)
      64

    References:
      K. Bipin, "Deep Learning, Lecture 6 — Optimization" (minibatch SGD).
    """
    _check_batch_size("batch_size", batch_size)

    def schedule(epoch: int) -> int:
        _check_epoch(epoch)
        return batch_size

    return schedule


def step_doubling_batch_size(
    initial: int, every: int, factor: float = 2, max_batch_size: Optional[int] = None
) -> BatchSizeSchedule:
    """Multiply the batch size by ``factor`` every ``every`` epochs, up to a cap.

    .. math:: B_e = \\min\\left(B_{max},\\; \\mathrm{round}(B_0 k^{\\lfloor e / K \\rfloor})\\right)

    The batch-size counterpart of ``step_decay``: growing the batch by ``k`` reduces the
    gradient noise as dividing the learning rate by ``k`` does (see the module docstring),
    so ``step_doubling_batch_size(B, K, 2)`` with a fixed learning rate mirrors
    ``per_epoch(step_decay(eps, 0.5, K), steps_per_epoch)`` with a fixed batch, taking
    fewer steps.

    Args:
      initial: ``B_0``, a positive int.
      every: ``K``, a positive int (epochs between increases).
      factor: ``k >= 1``.
      max_batch_size: ``B_max`` (``None``: no cap), at least ``initial``.

    Returns:
      A function ``epoch -> batch size``.

    Raises:
      ValueError: non-positive ``initial``/``every``, ``factor < 1`` or a cap below
        ``initial``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> s = jdl.step_doubling_batch_size(32, every=5, max_batch_size=100)
      >>> [s(e) for e in (0, 5, 10, 15)]
      [32, 64, 100, 100]

    References:
      Smith, Kindermans, Ying & Le 2018, "Don't Decay the Learning Rate, Increase the
      Batch Size"; J. Petersen, "Optimization in Deep Learning" ("batch size can be
      adjusted according to a schedule").
    """
    _check_batch_size("initial", initial)
    _check_batch_size("every", every)
    check_in_range("factor", factor, 1.0, math.inf)
    check_finite("factor", factor)
    cap = _check_cap(max_batch_size, initial)

    def schedule(epoch: int) -> int:
        _check_epoch(epoch)
        return _capped(initial, factor, epoch // every, cap)

    return schedule


def geometric_batch_size(initial: int, growth: float, max_batch_size: int) -> BatchSizeSchedule:
    """Grow the batch size by ``growth`` every epoch, up to ``max_batch_size``.

    .. math:: B_e = \\min\\left(B_{max},\\; \\mathrm{round}(B_0\\, g^{e})\\right)

    The batch-size counterpart of ``per_epoch(exponential_decay(eps, 1, 1 / g))``
    ("decay lr by k ~ grow the batch by k", see the module docstring).

    Args:
      initial: ``B_0``, a positive int.
      growth: ``g >= 1``.
      max_batch_size: ``B_max``, at least ``initial``.

    Returns:
      A function ``epoch -> batch size``.

    Raises:
      ValueError: a non-positive ``initial``, ``growth < 1`` or a cap below ``initial``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> s = jdl.geometric_batch_size(16, 1.5, 100)
      >>> [s(e) for e in (0, 1, 2, 10)]
      [16, 24, 36, 100]

    References:
      Smith et al. 2018; J. Petersen, "Optimization in Deep Learning" (small batches
      early, large batches late).
    """
    _check_batch_size("initial", initial)
    check_in_range("growth", growth, 1.0, math.inf)
    cap = _check_cap(max_batch_size, initial)

    def schedule(epoch: int) -> int:
        _check_epoch(epoch)
        return _capped(initial, growth, epoch, cap)

    return schedule


def _check_cap(max_batch_size: Optional[int], initial: int) -> Optional[int]:
    if max_batch_size is None:
        return None
    _check_batch_size("max_batch_size", max_batch_size)
    if max_batch_size < initial:
        raise ValueError(
            f"max_batch_size must be at least initial={initial}, "
            f"got max_batch_size={max_batch_size!r}"
        )
    return max_batch_size


def _capped(initial: int, factor: float, exponent: int, cap: Optional[int]) -> int:
    """``min(cap, round(initial * factor**exponent))`` without overflowing for large epochs."""
    if cap is not None and factor > 1 and exponent * math.log(factor) >= math.log(cap / initial):
        return cap
    if isinstance(factor, int):
        size = initial * factor**exponent
    else:
        size = int(round(initial * factor**exponent))
    return size if cap is None else min(cap, size)
