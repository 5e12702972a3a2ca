"""Optimizers beyond the lectures: the methods people ask for, with jdl's validation.

Two kinds live here:

* methods torch has and optax lacks or computes differently: :func:`radam`,
  :func:`rprop`, :func:`asgd` and :func:`torch_nadam`, written out to give
  ``torch.optim``'s numbers with torch's defaults;
* methods optax already has: :func:`adabelief`, :func:`yogi`, :func:`lars`,
  :func:`sam`, :func:`lookahead`, :func:`schedule_free_sgd`,
  :func:`schedule_free_adamw` and :func:`muon` -- optax's code and numbers, with the
  hyperparameters checked when the optimizer is built (``ValueError`` naming the
  argument and its value; traced values pass, so ``vmap`` over hyperparameters works).

Plus averages of the parameters, as ``torch.optim.swa_utils.AveragedModel`` (SWA and
EMA) and Keras's ``use_ema`` do them: :func:`param_averaging` and
:func:`averaged_params`.

The lectures (J. Petersen, "Optimization in Deep Learning"; R. Neychev, "Optimization
and regularization in Deep Learning") stop at Adam and its close relatives; these are the
methods users of torch and optax reach for next.
"""

from jaxopt_dl.contrib.averaging import ParamAverageState, averaged_params, param_averaging
from jaxopt_dl.contrib.optax_methods import (
    adabelief,
    lars,
    lookahead,
    muon,
    sam,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
    yogi,
)
from jaxopt_dl.contrib.torch_methods import (
    ASGDState,
    TorchNAdamState,
    asgd,
    asgd_average,
    radam,
    rprop,
    torch_nadam,
)

__all__ = [
    "radam",
    "rprop",
    "asgd",
    "ASGDState",
    "asgd_average",
    "torch_nadam",
    "TorchNAdamState",
    "adabelief",
    "yogi",
    "lars",
    "sam",
    "lookahead",
    "schedule_free_sgd",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "muon",
    "ParamAverageState",
    "param_averaging",
    "averaged_params",
]
