"""What the commands share: the registries of optimizers, schedules, models and
initializers (from which the argument choices, the help text and the checks that a flag
applies are derived), the flags that several commands take, the ``--out`` check and
the building of a resolved configuration's model and optimizer.
"""

from __future__ import annotations

import argparse
import inspect
import os
import tempfile
from typing import Any, Callable, NamedTuple, Optional

PROG = "python -m jaxopt_dl"


class UsageError(ValueError):
    """A bad invocation: reported as one line with exit status 2."""


# --------------------------------------------------------------------------
# Registries
# --------------------------------------------------------------------------


class Optimizer(NamedTuple):
    """An optimizer of the command line.

    Attributes:
      summary: one line for ``--help``.
      factory: the name of the ``jaxopt_dl`` function that builds it.
      flags: ``{flag dest: argument name of the factory}`` for the flags that apply.
      fixed: arguments always passed.
    """

    summary: str
    factory: str
    flags: dict
    fixed: Optional[dict] = None


ADAM_FLAGS = {"b1": "b1", "b2": "b2", "eps": "eps"}
OPTIMIZERS = {
    "sgd": Optimizer(
        "stochastic gradient descent, with --momentum a heavy-ball velocity",
        "sgd",
        {"momentum": "momentum"},
    ),
    "momentum": Optimizer(
        "heavy-ball momentum, written in the form --momentum-form",
        "momentum",
        {"momentum": "beta", "momentum_form": "form"},
    ),
    "nesterov": Optimizer(
        "Nesterov momentum",
        "momentum",
        {"momentum": "beta", "momentum_form": "form"},
        {"nesterov": True},
    ),
    "adagrad": Optimizer("AdaGrad", "adagrad", {"eps": "eps"}),
    "rmsprop": Optimizer(
        "RMSProp", "rmsprop", {"decay": "decay", "eps": "eps", "momentum": "momentum"}
    ),
    "adadelta": Optimizer(
        "AdaDelta", "adadelta", {"decay": "rho", "eps": "eps", "weight_decay": "weight_decay"}
    ),
    "adam": Optimizer("Adam", "adam", ADAM_FLAGS),
    "adamw": Optimizer(
        "Adam with decoupled weight decay", "adamw", {**ADAM_FLAGS, "weight_decay": "weight_decay"}
    ),
    "adamax": Optimizer("AdaMax (Adam with the infinity norm)", "adamax", ADAM_FLAGS),
    "nadam": Optimizer("Adam with Nesterov momentum", "nadam", ADAM_FLAGS),
    "radam": Optimizer(
        "RAdam (Adam with a rectified warmup of the second moment)", "radam", ADAM_FLAGS
    ),
    "amsgrad": Optimizer(
        "AMSGrad (Adam with a non-decreasing second moment)", "amsgrad", ADAM_FLAGS
    ),
    "lamb": Optimizer(
        "LAMB (layer-wise trust ratio)", "lamb", {**ADAM_FLAGS, "weight_decay": "weight_decay"}
    ),
    "lion": Optimizer(
        "Lion (sign of an interpolated momentum)",
        "lion",
        {"b1": "b1", "b2": "b2", "weight_decay": "weight_decay"},
    ),
    "adafactor": Optimizer("Adafactor (factored second moments)", "adafactor", {}),
    "noisy_sgd": Optimizer(
        "SGD with annealed Gaussian gradient noise (seeded by --seed)", "noisy_sgd", {}
    ),
}


class Schedule(NamedTuple):
    """A learning-rate schedule of the ``train`` command.

    Attributes:
      summary: one line for ``--help``.
      build: ``build(lr, total_steps, steps_per_epoch, decay_rate) -> rate or schedule``.
      uses_decay_rate: whether ``--decay-rate`` applies.
    """

    summary: str
    build: Callable[..., Any]
    uses_decay_rate: bool = False


def library():
    """The ``jaxopt_dl`` package, imported when a command first needs it (so that a bad
    invocation is refused before JAX starts).

    Returns:
      The module.
    """
    import jaxopt_dl

    return jaxopt_dl


SCHEDULES = {
    "constant": Schedule("--lr throughout", lambda lr, total, per_epoch, rate: lr),
    "cosine": Schedule(
        "cosine decay from --lr to 0 over the run",
        lambda lr, total, per_epoch, rate: library().cosine_decay_schedule(lr, total),
    ),
    "warmup_cosine": Schedule(
        "linear warmup from 0 over the first 5%% of the steps, then cosine decay to 0",
        lambda lr, total, per_epoch, rate: library().warmup_cosine_decay_schedule(
            0.0, lr, max(1, total // 20), total
        ),
    ),
    "step": Schedule(
        "multiply by --decay-rate after each third of the run",
        lambda lr, total, per_epoch, rate: library().step_decay(lr, rate, max(1, total // 3)),
        True,
    ),
    "exponential": Schedule(
        "multiply by --decay-rate per epoch, smoothly",
        lambda lr, total, per_epoch, rate: library().exponential_decay(lr, per_epoch, rate),
        True,
    ),
    "inverse_time": Schedule(
        "--lr / (1 + decay-rate * epochs so far)",
        lambda lr, total, per_epoch, rate: library().inverse_time_decay(lr, rate, per_epoch),
        True,
    ),
}
DECAY_RATE = 0.5

MODELS = {
    "mlp": "multilayer perceptron with --hidden widths",
    "cnn": "small convolutional network",
    "resnet": "small residual network (batch norm on by default)",
    "cnn1d": "1-D convolutional network over the inputs as a sequence",
    "gru": "bidirectional GRU over the inputs as a sequence (no batch norm)",
}
IMAGE_MODELS = ("cnn", "resnet")
"""Models that read the inputs as square images (the digits' 8x8, not MNIST-1D's 40)."""
HIDDEN = (128, 64)
INITS = {
    "he_normal": "He normal (for ReLU)",
    "he_uniform": "He uniform",
    "glorot_uniform": "Glorot uniform",
    "glorot_normal": "Glorot normal",
    "normalized_uniform": "Glorot and Bengio's normalized uniform",
    "lecun_normal": "LeCun normal",
    "orthogonal": "orthogonal",
    "sparse": "sparse: --sparse-k non-zero incoming weights per unit",
    "small_random": "small Gaussian (std 0.01)",
}
SPARSE_K = 15
MOMENTUM_FORMS = ("velocity", "ema", "trace")
DATASETS = {
    "digits": "the 8x8 handwritten digits of scikit-learn (bundled)",
    "mnist1d": "Greydanus' MNIST-1D, 40-long sequences (generated offline)",
}
STANDARDIZE = {
    "global": "one mean and std over all pixels",
    "feature": "one mean and std per pixel",
    "none": "raw pixel values",
}


def listing(registry: dict) -> str:
    """``name: summary; ...`` of a registry, for a flag's help.

    Args:
      registry: ``{name: summary}`` or ``{name: entry with a summary}``.

    Returns:
      One line.
    """
    return "; ".join(
        f"{name}: {entry if isinstance(entry, str) else entry.summary}"
        for name, entry in registry.items()
    )


def applies_to(flag: str) -> list[str]:
    """The optimizers of :data:`OPTIMIZERS` that an optimizer flag applies to.

    Args:
      flag: the flag's ``dest``, e.g. ``"b1"``.

    Returns:
      Their names, in registry order.
    """
    return [name for name, opt in OPTIMIZERS.items() if flag in opt.flags]


def _parsed(text: str, convert: Callable[[str], Any], ok: Callable[[Any], bool], what: str):
    """``convert(text)`` if that succeeds and is ``ok``; else an argparse error naming
    ``what`` was expected and what was given."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1.

    Args:
      text: the flag's value.

    Returns:
      The integer.
    """
    return _parsed(text, int, lambda value: value >= 1, "a positive integer")


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1), e.g. the share of the data held out.

    Args:
      text: the flag's value.

    Returns:
      The number.
    """
    return _parsed(text, float, lambda value: 0 <= value < 1, "a number in [0, 1)")


def _widths(text: str) -> tuple[int, ...]:
    return _parsed(
        text,
        lambda t: tuple(int(w) for w in t.split(",")),
        lambda widths: min(widths) >= 1,
        "comma-separated positive integers like 256,128",
    )


# --------------------------------------------------------------------------
# Flags shared by the commands
# --------------------------------------------------------------------------

OPTIMIZER_FLAGS = ("momentum", "momentum_form", "b1", "b2", "eps", "decay")
"""Flags of the optimizers' own arguments (each applies to some of :data:`OPTIMIZERS`)."""


def adder(parser: argparse.ArgumentParser) -> Callable[..., None]:
    """``add(*names, help, default, shown=None, **kwargs)``: adds a flag whose help ends
    with its default (``shown``, where the default is None or not what the user sees).

    Args:
      parser: the command's sub-parser.

    Returns:
      ``add``.
    """

    def add(*names, help, default, shown=None, **kwargs):
        shown = default if shown is None else shown
        parser.add_argument(*names, default=default, help=f"{help} (default: {shown})", **kwargs)

    return add


def add_model_flags(add: Callable[..., None]) -> None:
    """``--model``, ``--hidden``, ``--batchnorm``, ``--dropout``, ``--init``, ``--sparse-k``.

    Args:
      add: from :func:`adder`.
    """
    add("--model", choices=MODELS, default="mlp", help=listing(MODELS))
    add(
        "--hidden",
        type=_widths,
        default=None,
        metavar="W1,W2,...",
        shown=",".join(map(str, HIDDEN)),
        help="hidden widths of --model mlp",
    )
    add(
        "--batchnorm",
        action=argparse.BooleanOptionalAction,
        default=None,
        shown="on for resnet, off otherwise",
        help="batch normalization",
    )
    add("--dropout", type=float, default=0.0, help="dropout rate")
    add("--init", choices=INITS, default="he_normal", help=listing(INITS))
    add(
        "--sparse-k",
        type=positive_int,
        default=None,
        shown=SPARSE_K,
        help="non-zero incoming weights per unit of --init sparse",
    )


def add_optimizer_flags(add: Callable[..., None], lr_help: Optional[str]) -> None:
    """``--optimizer``, ``--lr`` and the flags of the optimizers' own arguments.

    Args:
      add: from :func:`adder`.
      lr_help: the help of ``--lr``; None for a command without ``--lr``.
    """
    own = "the optimizer's own"
    add("--optimizer", choices=OPTIMIZERS, default="adam", help=listing(OPTIMIZERS))
    if lr_help is not None:
        add("--lr", type=float, default=1e-3, help=lr_help)
    add(
        "--momentum",
        "--beta",
        dest="momentum",
        type=float,
        default=None,
        shown=own,
        help="momentum coefficient, for " + ", ".join(applies_to("momentum")),
    )
    add(
        "--momentum-form",
        choices=MOMENTUM_FORMS,
        default=None,
        shown="velocity",
        help="how momentum is written (velocity: v = beta v - lr g, as Goodfellow et "
        "al.; ema: m = beta m + (1 - beta) g, steps 1 - beta times smaller; trace: "
        "m = g + beta m, as optax and torch), for " + ", ".join(applies_to("momentum_form")),
    )
    add(
        "--b1",
        type=float,
        default=None,
        shown=own,
        help="decay of the first-moment average, for " + ", ".join(applies_to("b1")),
    )
    add(
        "--b2",
        type=float,
        default=None,
        shown=own,
        help="decay of the second-moment average, for " + ", ".join(applies_to("b2")),
    )
    add(
        "--eps",
        type=float,
        default=None,
        shown=own,
        help="denominator offset, for " + ", ".join(applies_to("eps")),
    )
    add(
        "--decay",
        type=float,
        default=None,
        shown=own,
        help="decay of the squared-gradient average (adadelta's rho), for "
        + ", ".join(applies_to("decay")),
    )


def add_run_flags(add: Callable[..., None], out: str, writes: str) -> None:
    """``--batch-size``, ``--seed`` and ``--out``.

    Args:
      add: from :func:`adder`.
      out: the default output folder.
      writes: what the command writes there, for the help.
    """
    add("--batch-size", type=positive_int, default=64, help="examples per step")
    add(
        "--seed",
        type=int,
        default=0,
        help="seed of the initialization, the validation split and the shuffles",
    )
    add("--out", default=out, help=f"output folder for {writes}")


def check_shared(args) -> None:
    """Refuse optimizer flags that do not apply to ``--optimizer``, ``--hidden`` without
    ``--model mlp`` and ``--sparse-k`` without ``--init sparse``.

    Args:
      args: the parsed arguments of any command.

    Raises:
      UsageError: naming the flag and what it applies to.
    """
    optimizer = OPTIMIZERS[args.optimizer]
    for flag in OPTIMIZER_FLAGS:
        if getattr(args, flag) is not None and flag not in optimizer.flags:
            raise UsageError(
                f"--{flag.replace('_', '-')} does not apply to --optimizer {args.optimizer} "
                f"(it applies to {', '.join(applies_to(flag))})"
            )
    if args.hidden is not None and args.model != "mlp":
        raise UsageError(f"--hidden does not apply to --model {args.model} (only to mlp)")
    if args.sparse_k is not None and args.init != "sparse":
        raise UsageError(f"--sparse-k does not apply to --init {args.init} (only to sparse)")
    if args.batchnorm and args.model == "gru":
        raise UsageError("--batchnorm does not apply to --model gru")
    dataset = getattr(args, "dataset", "digits")  # only train has --dataset
    if dataset == "mnist1d" and args.model in IMAGE_MODELS:
        raise UsageError(
            f"--model {args.model} reads square images and does not apply to --dataset "
            "mnist1d (use mlp, cnn1d or gru)"
        )


def check_out(out: str) -> None:
    """Create ``out`` and check that a file can be written there (before JAX starts).

    Args:
      out: the ``--out`` folder.

    Raises:
      UsageError: one line naming the folder and the reason.
    """
    try:
        os.makedirs(out, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()  # can a file be created there?
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(f"--out {out!r} is not a writable folder: {reason}") from None


def _optimizer_arguments(args) -> dict:
    """The optimizer's arguments by name, every default filled in (for the record)."""
    optimizer = OPTIMIZERS[args.optimizer]
    defaults = inspect.signature(getattr(library(), optimizer.factory)).parameters
    resolved = {}
    for flag, name in optimizer.flags.items():
        value = getattr(args, flag, None)  # only train has --weight-decay
        resolved[name] = defaults[name].default if value is None else value
    return {**resolved, **(optimizer.fixed or {})}


def resolve_config(args) -> dict:
    """The full configuration of a run of any command, with every default filled in.

    Args:
      args: the parsed arguments (already checked).

    Returns:
      A JSON-able dict.
    """
    config = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in vars(args).items()
        if k not in ("command", "run", *OPTIMIZER_FLAGS)
    }
    config["optimizer_arguments"] = _optimizer_arguments(args)
    config["batchnorm"] = args.batchnorm if args.batchnorm is not None else args.model == "resnet"
    config["hidden"] = list(args.hidden or HIDDEN) if args.model == "mlp" else None
    config["sparse_k"] = (args.sparse_k or SPARSE_K) if args.init == "sparse" else None
    if args.command != "train":
        return config
    own_decay = "weight_decay" in OPTIMIZERS[args.optimizer].flags
    uses_l2 = args.weight_decay is not None and not own_decay
    config["weight_decay"] = args.weight_decay if uses_l2 else None
    config["weight_decay_kind"] = "l2" if uses_l2 else ("decoupled" if own_decay else "none")
    config["decay_rate"] = (
        (DECAY_RATE if args.decay_rate is None else args.decay_rate)
        if SCHEDULES[args.schedule].uses_decay_rate
        else None
    )
    return config


def optimizer_factory(config: dict, seed: int) -> Callable[[Any], Any]:
    """``learning_rate -> GradientTransformation`` of a resolved config's optimizer.

    Args:
      config: from :func:`resolve_config`.
      seed: the run's seed (for ``noisy_sgd``).

    Returns:
      The factory (what :func:`jaxopt_dl.lr_find` takes).
    """
    name = config["optimizer"]
    arguments = dict(config["optimizer_arguments"])
    if name == "noisy_sgd":
        arguments["key"] = seed
    factory = getattr(library(), OPTIMIZERS[name].factory)
    return lambda learning_rate: factory(learning_rate, **arguments)


def load_dataset(config: dict):
    """The ``(train, test)`` arrays of a resolved config's ``dataset`` and ``standardize``.

    Args:
      config: from :func:`resolve_config`.

    Returns:
      ``((x_train, y_train), (x_test, y_test))`` as :func:`jaxopt_dl.data.load_digits`.
    """
    data = library().data
    standardize = {"global": "global", "feature": True, "none": False}[config["standardize"]]
    if config["dataset"] == "mnist1d":
        return data.load_mnist1d(standardize=standardize)
    return data.load_digits(seed=config["seed"], standardize=standardize)


def build_model(config: dict):
    """The model of a resolved config.

    Args:
      config: from :func:`resolve_config`.

    Returns:
      The flax module.
    """
    jdl = library()
    init = (
        jdl.initializers.sparse(config["sparse_k"])
        if config["init"] == "sparse"
        else getattr(jdl.initializers, config["init"])()
    )
    common = dict(dropout_rate=config["dropout"], kernel_init=init)
    if config["model"] == "gru":
        return jdl.models.GRU(**common)
    common["use_batchnorm"] = config["batchnorm"]
    if config["model"] == "mlp":
        return jdl.models.MLP(hidden=tuple(config["hidden"]), **common)
    models = {"cnn": jdl.models.CNN, "resnet": jdl.models.ResNet, "cnn1d": jdl.models.CNN1D}
    return models[config["model"]](**common)
