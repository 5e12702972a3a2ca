"""jaxopt_dl: the deep-learning optimization canon as optax-compatible JAX transforms."""

__version__ = "0.1.0"

# --- core ---------------------------------------------------------------


# --- transforms and optimizers ------------------------------------------


# --- schedules ------------------------------------------------------------
from jaxopt_dl.plateau import ReduceLROnPlateauState, reduce_on_plateau
from jaxopt_dl.schedules import (
    BatchSizeSchedule,
    constant_batch_size,
    constant_schedule,
    cosine_decay_schedule,
    cosine_onecycle_schedule,
    cyclic_schedule,
    exponential_decay,
    geometric_batch_size,
    inverse_time_decay,
    join_schedules,
    linear_onecycle_schedule,
    linear_schedule,
    multistep_decay,
    per_epoch,
    piecewise_constant_schedule,
    polynomial_schedule,
    sgdr_schedule,
    step_decay,
    step_doubling_batch_size,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
)


# --- second order and diagnostics -----------------------------------------


# --- training-side names ----------------------------------------------------

