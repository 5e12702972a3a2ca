"""The one list of jaxopt_dl's optimizers, read by the command line, the docs and the tests.

Plain data (the module itself imports no optimizer): each :class:`Entry` names its
factory (``"module:attribute"``), a summary and its torch and optax counterparts. What needs the library is computed from it on
demand: the factory itself (:func:`factory`), its hyperparameters from the signature
(:func:`hyperparameters`) and whether the fused step has a kernel for it
(:func:`fusable`, from the optimizer's description). Adding an optimizer is its block
and one entry here.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, NamedTuple, Optional


class Entry(NamedTuple):
    """One optimizer.

    Attributes:
      factory: ``"module:attribute"`` of the function that builds it.
      summary: one line (``--help``, the docs' tables).
      torch: the ``torch.optim`` counterpart, or ``""``.
      optax: the optax counterpart, or ``""``.
      wraps: the names of its arguments that take another optimizer (``()``: none);
        such an optimizer is built around ``sgd`` in the tests and is not offered by
        the command line.
    """

    factory: str
    summary: str
    torch: str = ""
    optax: str = ""
    wraps: tuple = ()


_O = "jaxopt_dl.optimizers"
_T = "jaxopt_dl.contrib.torch_methods"
_X = "jaxopt_dl.contrib.optax_methods"
_A = "jaxopt_dl.contrib.averaging"

OPTIMIZERS: dict[str, Entry] = {
    "sgd": Entry(
        f"{_O}:sgd", "stochastic gradient descent, optionally heavy-ball momentum", "SGD", "sgd"
    ),
    "momentum": Entry(f"{_O}:momentum", "momentum in the velocity, EMA or trace form", "SGD"),
    "adagrad": Entry(f"{_O}:adagrad", "AdaGrad", "Adagrad", "adagrad"),
    "rmsprop": Entry(f"{_O}:rmsprop", "RMSProp", "RMSprop", "rmsprop"),
    "adadelta": Entry(f"{_O}:adadelta", "AdaDelta", "Adadelta", "adadelta"),
    "adam": Entry(f"{_O}:adam", "Adam", "Adam", "adam"),
    "nadam": Entry(
        f"{_O}:nadam", "Adam with a Nesterov first moment (optax's numbers)", "", "nadam"
    ),
    "adamw": Entry(f"{_O}:adamw", "Adam with decoupled weight decay", "AdamW", "adamw"),
    "adamax": Entry(f"{_O}:adamax", "AdaMax (Adam with the infinity norm)", "Adamax", "adamax"),
    "amsgrad": Entry(
        f"{_O}:amsgrad",
        "AMSGrad (Adam with a non-decreasing second moment)",
        "Adam(amsgrad=True)",
        "amsgrad",
    ),
    "noisy_sgd": Entry(
        f"{_O}:noisy_sgd", "SGD with annealed Gaussian gradient noise", "", "noisy_sgd"
    ),
    "lamb": Entry(f"{_O}:lamb", "LAMB (layer-wise trust ratio)", "", "lamb"),
    "lion": Entry(f"{_O}:lion", "Lion (sign of an interpolated momentum)", "", "lion"),
    "adafactor": Entry(
        f"{_O}:adafactor", "Adafactor (factored second moments)", "Adafactor", "adafactor"
    ),
    "adan": Entry(f"{_O}:adan", "Adan (adaptive Nesterov momentum)", "", "adan"),
    "radam": Entry(
        f"{_T}:radam", "RAdam (rectified warmup of the second moment)", "RAdam", "radam"
    ),
    "rprop": Entry(f"{_T}:rprop", "Rprop (sign-based per-coordinate step sizes)", "Rprop", "rprop"),
    "asgd": Entry(f"{_T}:asgd", "averaged SGD (Polyak-Ruppert)", "ASGD"),
    "torch_nadam": Entry(
        f"{_T}:torch_nadam", "NAdam with torch's momentum-decay schedule", "NAdam"
    ),
    "adabelief": Entry(f"{_X}:adabelief", "AdaBelief", "", "adabelief"),
    "yogi": Entry(f"{_X}:yogi", "Yogi (additive second-moment update)", "", "yogi"),
    "lars": Entry(f"{_X}:lars", "LARS (layer-wise trust ratio, momentum)", "", "lars"),
    "schedule_free_sgd": Entry(
        f"{_X}:schedule_free_sgd", "schedule-free SGD", "", "contrib.schedule_free_sgd"
    ),
    "schedule_free_adamw": Entry(
        f"{_X}:schedule_free_adamw", "schedule-free AdamW", "", "contrib.schedule_free_adamw"
    ),
    "muon": Entry(f"{_X}:muon", "Muon (orthogonalized momentum for matrices)", "", "contrib.muon"),
    "sam": Entry(
        f"{_X}:sam",
        "sharpness-aware minimization",
        "",
        "contrib.sam",
        ("optimizer", "adv_optimizer"),
    ),
    "lookahead": Entry(
        f"{_X}:lookahead", "Lookahead (slow and fast weights)", "", "lookahead", ("fast_optimizer",)
    ),
    "param_averaging": Entry(
        f"{_A}:param_averaging",
        "EMA or SWA of the params",
        "swa_utils.AveragedModel",
        "",
        ("optimizer",),
    ),
}
"""Every optimizer jaxopt_dl exports, by name."""


def factory(name: str) -> Callable[..., Any]:
    """The function that builds optimizer ``name``.

    Args:
      name: a key of :data:`OPTIMIZERS`.
    """
    module, attribute = OPTIMIZERS[name].factory.split(":")
    return getattr(importlib.import_module(module), attribute)


def hyperparameters(name: str) -> dict[str, Any]:
    """``{argument: default}`` of optimizer ``name`` (``inspect.Parameter.empty``: required).

    Args:
      name: a key of :data:`OPTIMIZERS`.
    """
    return {
        argument: parameter.default
        for argument, parameter in inspect.signature(factory(name)).parameters.items()
    }


def example(name: str, learning_rate: Any = 0.1, **arguments: Any) -> Any:
    """Optimizer ``name`` at ``learning_rate``: wrappers wrap ``sgd(learning_rate)``.

    Args:
      name: a key of :data:`OPTIMIZERS`.
      learning_rate: the rate (of the wrapped ``sgd`` for a wrapper).
      **arguments: further arguments.
    """
    entry = OPTIMIZERS[name]
    if not entry.wraps:
        return factory(name)(learning_rate, **arguments)
    from jaxopt_dl.optimizers import sgd

    inner = {wrapped: sgd(learning_rate) for wrapped in entry.wraps}
    if "adv_optimizer" in inner:
        inner["adv_optimizer"] = sgd(0.05)
    return factory(name)(**inner, **arguments)


def fusable(name: str) -> Optional[bool]:
    """Whether the fused step has a kernel part for every block of ``name``'s default build.

    Read from the description: every leaf block names a kernel part.

    Args:
      name: a key of :data:`OPTIMIZERS`.
    """
    from jaxopt_dl import _core

    description = _core.describe(example(name))
    leaves = []
    stack = [description]
    while stack:
        node = stack.pop()
        if node.children:
            stack.extend(node.children)
        else:
            leaves.append(node)
    return all(leaf.kernel is not None for leaf in leaves)


def markdown_table() -> str:
    """The optimizers as a Markdown table (name, summary, torch, optax, fusable).

    Returns:
      The table, one row per optimizer.
    """
    rows = ["| optimizer | what | torch.optim | optax | fused kernel |", "|---|---|---|---|---|"]
    for name, entry in OPTIMIZERS.items():
        rows.append(
            f"| `{name}` | {entry.summary} | {entry.torch or '-'} | {entry.optax or '-'} | "
            f"{'yes' if fusable(name) else 'no'} |"
        )
    return "\n".join(rows)
