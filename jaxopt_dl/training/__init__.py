"""Training: state, steps, the ``fit`` loop, sweeps, curriculum and continuation.

* :class:`TrainState` / :func:`create_train_state` — params, optimizer state,
  batch-norm running averages, an rng and NaN bookkeeping in one pytree.
* :func:`train_step` / :func:`eval_step` / :func:`diagnostics_step` — jitted steps of a
  softmax classifier (gradient accumulation, ``value=loss`` for ``reduce_on_plateau``,
  non-finite steps skipped bit-exactly).
* :func:`fit` — epochs of shuffled minibatches, batch-size schedules, early stopping,
  progress bar, :class:`History` and :func:`plot_history`.
* :func:`sweep` — many hyperparameter settings x seeds as ONE jit+vmap program.
* :class:`CurriculumSampler` — easy-to-hard sampling with a growing pool, for ``fit``.
* :func:`continuation` — minimize a sequence of smoothed objectives, warm-started.
"""

from jaxopt_dl.training.continuation import ContinuationResult, continuation, gaussian_smoothing
from jaxopt_dl.training.curriculum import (
    CurriculumSampler,
    baby_steps,
    example_scores,
    linear_pacing,
)
from jaxopt_dl.training.history import History, plot_history
from jaxopt_dl.training.loop import (
    NonFiniteError,
    epoch_indices,
    evaluate,
    fit,
    train_state_shardings,
)
from jaxopt_dl.training.state import TrainState, create_train_state
from jaxopt_dl.training.steps import (
    cross_entropy,
    diagnostics_step,
    eval_step,
    train_step,
    train_step_fn,
)
from jaxopt_dl.training.sweep import SweepResult, sweep

__all__ = [
    "TrainState",
    "create_train_state",
    "cross_entropy",
    "train_step",
    "train_step_fn",
    "eval_step",
    "diagnostics_step",
    "fit",
    "evaluate",
    "epoch_indices",
    "train_state_shardings",
    "NonFiniteError",
    "History",
    "plot_history",
    "sweep",
    "SweepResult",
    "CurriculumSampler",
    "linear_pacing",
    "baby_steps",
    "example_scores",
    "continuation",
    "ContinuationResult",
    "gaussian_smoothing",
]
