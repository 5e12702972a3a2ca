"""Learning-rate schedules: step -> value, and the loss-driven ``reduce_on_plateau``.

* :mod:`jaxopt_dl.schedules.optax_named` — optax's schedules under optax's names,
  arguments and values, validated on entry.
* :mod:`jaxopt_dl.schedules.lecture` — the lectures', torch's and Keras' schedules that
  optax lacks (inverse-time, step and multi-step decay, per-epoch, cyclic).
* :mod:`jaxopt_dl.schedules.plateau` — ``reduce_on_plateau``, a transform that scales
  the updates down when the monitored loss stops improving.

Batch-size schedules (epoch -> batch size) live next to the trainer, in
:mod:`jaxopt_dl.training.batch_size`.
"""

from jaxopt_dl.schedules import lecture, optax_named, plateau
from jaxopt_dl.schedules.lecture import (
    cyclic_schedule,
    inverse_time_decay,
    multistep_decay,
    per_epoch,
    step_decay,
)
from jaxopt_dl.schedules.optax_named import (
    constant_schedule,
    cosine_decay_schedule,
    cosine_onecycle_schedule,
    exponential_decay,
    join_schedules,
    linear_onecycle_schedule,
    linear_schedule,
    piecewise_constant_schedule,
    polynomial_schedule,
    sgdr_schedule,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
)
from jaxopt_dl.schedules.plateau import ReduceLROnPlateauState, reduce_on_plateau

__all__ = optax_named.__all__ + lecture.__all__ + plateau.__all__
