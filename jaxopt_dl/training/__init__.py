"""Training: state, steps, the ``fit`` loop and its callbacks, sweeps, curriculum, continuation.

* :class:`TrainState` / :func:`create_train_state` — params, optimizer state,
  batch-norm running averages, an rng and NaN bookkeeping in one pytree.
* :func:`train_step` / :func:`eval_step` / :func:`diagnostics_step` — jitted steps under
  a loss (softmax cross-entropy by default; gradient accumulation, ``value=loss`` for
  ``reduce_on_plateau``, non-finite steps skipped bit-exactly).
* :func:`fit` — a small epoch loop over arrays (one compiled program per epoch) or
  streamed batches; :class:`EarlyStopping`, :class:`ModelCheckpoint`,
  :class:`ProgressLogger`, :class:`NonFiniteGuard`, :class:`PlateauFeeder`,
  :class:`CSVLogger`, :class:`TensorBoard` and your own :class:`Callback`;
  :class:`History` (with Keras's ``History.history``) and :func:`plot_history`.
* Any Linen module trains, with or without a ``train`` argument
  (:func:`model_apply`).
* :func:`sweep` — many hyperparameter settings x seeds as ONE jit+vmap program, with the
  same epoch program as ``fit`` (:func:`scan_epoch`).
* :class:`CurriculumSampler` — easy-to-hard sampling with a growing pool, for ``fit``.
* :func:`continuation` — minimize a sequence of smoothed objectives, warm-started.
"""

from jaxopt_dl.training.callbacks import (
    Callback,
    EarlyStopping,
    LambdaCallback,
    ModelCheckpoint,
    NonFiniteError,
    NonFiniteGuard,
    PlateauFeeder,
    ProgressLogger,
    Trainer,
)
from jaxopt_dl.training.continuation import ContinuationResult, continuation, gaussian_smoothing
from jaxopt_dl.training.curriculum import (
    CurriculumSampler,
    baby_steps,
    example_scores,
    linear_pacing,
)
from jaxopt_dl.training.devices import over_host_devices
from jaxopt_dl.training.epoch import epoch_indices, scan_epoch, train_state_shardings
from jaxopt_dl.training.history import History, best_epoch, plot_history
from jaxopt_dl.training.loggers import CSVLogger, TensorBoard
from jaxopt_dl.training.loop import FitConfig, evaluate, evaluate_metrics, fit
from jaxopt_dl.training.modules import ModelApply, model_apply
from jaxopt_dl.training.state import TrainState, create_train_state
from jaxopt_dl.training.steps import (
    accuracy,
    cross_entropy,
    diagnostics_step,
    eval_step,
    mean_absolute_error,
    mean_squared_error,
    predict,
    resolve_metrics,
    softmax_cross_entropy,
    train_step,
    train_step_fn,
)
from jaxopt_dl.training.sweep import SweepResult, sweep

__all__ = [
    "TrainState",
    "create_train_state",
    "cross_entropy",
    "softmax_cross_entropy",
    "mean_squared_error",
    "mean_absolute_error",
    "accuracy",
    "resolve_metrics",
    "ModelApply",
    "model_apply",
    "predict",
    "train_step",
    "train_step_fn",
    "eval_step",
    "diagnostics_step",
    "fit",
    "FitConfig",
    "evaluate",
    "evaluate_metrics",
    "epoch_indices",
    "scan_epoch",
    "train_state_shardings",
    "Callback",
    "Trainer",
    "LambdaCallback",
    "ProgressLogger",
    "EarlyStopping",
    "ModelCheckpoint",
    "NonFiniteGuard",
    "NonFiniteError",
    "PlateauFeeder",
    "CSVLogger",
    "TensorBoard",
    "History",
    "best_epoch",
    "plot_history",
    "sweep",
    "SweepResult",
    "over_host_devices",
    "CurriculumSampler",
    "linear_pacing",
    "baby_steps",
    "example_scores",
    "continuation",
    "ContinuationResult",
    "gaussian_smoothing",
]
