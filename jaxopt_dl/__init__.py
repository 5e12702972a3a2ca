"""jaxopt_dl: the deep-learning optimization canon as optax-compatible JAX transforms."""

__version__ = "0.1.0"

# --- core ---------------------------------------------------------------
from jaxopt_dl._core import (
    EmptyState,
    GradientTransformation,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    Schedule,
    apply_updates,
    chain,
    global_norm,
    identity,
    safe_increment,
)


# --- transforms and optimizers ------------------------------------------
from jaxopt_dl.optimizers import (
    adadelta,
    adafactor,
    adagrad,
    adam,
    adamax,
    adamw,
    amsgrad,
    lamb,
    lion,
    momentum,
    nadam,
    noisy_sgd,
    rmsprop,
    sgd,
)
from jaxopt_dl.transforms import (
    MultiSteps,
    adaptive_grad_clip,
    add_decayed_weights,
    add_elastic_net,
    add_l1,
    add_l2,
    add_noise,
    apply_if_finite,
    bias_correction,
    clip,
    clip_by_block_rms,
    clip_by_global_norm,
    current_learning_rate,
    ema,
    inject_hyperparams,
    masked,
    multi_transform,
    nesterov_ema,
    scale,
    scale_by_adadelta,
    scale_by_adam,
    scale_by_adamax,
    scale_by_amsgrad,
    scale_by_learning_rate,
    scale_by_rms,
    scale_by_rss,
    scale_by_schedule,
    scale_by_stddev,
    trace,
    velocity,
)


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
from jaxopt_dl.diagnostics import gradient_check
from jaxopt_dl.second_order import OptimizeResult, least_squares, minimize


# --- training-side names ----------------------------------------------------
from jaxopt_dl import (
    checkpoint,
    data,
    diagnostics,
    distributed,
    fused,
    initializers,
    models,
    training,
)

