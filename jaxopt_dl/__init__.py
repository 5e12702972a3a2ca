"""jaxopt_dl: the deep-learning optimization canon as optax-compatible JAX transforms."""

__version__ = "0.3.0"

# --- core ---------------------------------------------------------------
# --- training-side names ----------------------------------------------------
from jaxopt_dl import (
    checklist,
    checkpoint,
    contrib,
    data,
    diagnostics,
    distributed,
    fused,
    initializers,
    lr_finder,
    models,
    registry,
    schedules,
    training,
)
from jaxopt_dl._core import (
    EmptyState,
    GradientTransformation,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    Schedule,
    apply_updates,
    chain,
    describe,
    global_norm,
    identity,
    safe_increment,
)
from jaxopt_dl._precision import kahan_apply_updates, stochastic_round
from jaxopt_dl.checklist import CheckItem, DiagnoseReport, diagnose

# --- optimizers beyond the lectures, lr range test, debugging checklist ---
from jaxopt_dl.contrib import (
    ASGDState,
    ParamAverageState,
    TorchNAdamState,
    adabelief,
    asgd,
    asgd_average,
    averaged_params,
    lars,
    lookahead,
    muon,
    param_averaging,
    radam,
    rprop,
    sam,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
    torch_nadam,
    yogi,
)

# --- second order and diagnostics -----------------------------------------
from jaxopt_dl.diagnostics import gradient_check
from jaxopt_dl.lr_finder import LRFindResult, LRRampResult, lr_find, lr_ramp, plot_lr_find

# --- transforms and optimizers ------------------------------------------
from jaxopt_dl.optimizers import (
    adadelta,
    adafactor,
    adagrad,
    adam,
    adamax,
    adamw,
    adan,
    amsgrad,
    lamb,
    lion,
    momentum,
    nadam,
    noisy_sgd,
    rmsprop,
    sgd,
)

# --- schedules ------------------------------------------------------------
from jaxopt_dl.schedules import (
    ReduceLROnPlateauState,
    constant_schedule,
    cosine_decay_schedule,
    cosine_onecycle_schedule,
    cyclic_schedule,
    exponential_decay,
    inverse_time_decay,
    join_schedules,
    linear_onecycle_schedule,
    linear_schedule,
    multistep_decay,
    per_epoch,
    piecewise_constant_schedule,
    polynomial_schedule,
    reduce_on_plateau,
    sgdr_schedule,
    step_decay,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
)
from jaxopt_dl.second_order import OptimizeResult, least_squares, minimize
from jaxopt_dl.training.batch_size import (
    BatchSizeSchedule,
    constant_batch_size,
    geometric_batch_size,
    step_doubling_batch_size,
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
