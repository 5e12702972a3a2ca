"""What the commands share: the registries of optimizers, schedules, models and
initializers (from which the argument choices, the help text and the checks that a flag
applies are derived), the flags that several commands take, the ``--out`` check and
the building of a resolved configuration's model and optimizer.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import re
import tempfile
from typing import Any, Callable, NamedTuple, Optional

from jaxopt_dl import registry as optimizer_registry
from jaxopt_dl.optimizers import MOMENTUM_FORMS

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
_CURATED = {
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
    "adamw": Optimizer(
        "Adam with decoupled weight decay", "adamw", {**ADAM_FLAGS, "weight_decay": "weight_decay"}
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
"""Optimizers whose flags are not derived from their arguments' names (others are)."""

_SHARED_FLAGS = {"b1": "b1", "b2": "b2", "eps": "eps", "momentum": "momentum"}
"""``{flag dest: argument}`` applied wherever an optimizer has that argument."""


def _optimizers() -> dict:
    """Every optimizer of :data:`jaxopt_dl.registry.OPTIMIZERS` that takes no other
    optimizer, with its flags (the curated ones, else those of :data:`_SHARED_FLAGS` its
    signature has); every other argument is reached with ``--opt-arg NAME=VALUE``."""
    table = {}
    for name, entry in optimizer_registry.OPTIMIZERS.items():
        if entry.wraps:
            continue
        if name in _CURATED:
            table[name] = _CURATED[name]
            if name == "momentum":
                table["nesterov"] = _CURATED["nesterov"]
            continue
        arguments = optimizer_registry.hyperparameters(name)
        flags = {flag: arg for flag, arg in _SHARED_FLAGS.items() if arg in arguments}
        table[name] = Optimizer(entry.summary, name, flags)
    return table


OPTIMIZERS = _optimizers()
"""The optimizers of the command line: the registry's, by name."""


class Schedule(NamedTuple):
    """A learning-rate schedule of the ``train`` command.

    Attributes:
      summary: one line for ``--help``.
      build: ``build(config, steps, steps_per_epoch) -> rate or schedule`` over
        ``steps`` steps (the run's, less the ``--warmup-steps``).
      knobs: the flags (``dest``) of its own settings, from :data:`SCHEDULE_KNOBS`.
      spans_run: whether its shape depends on the number of epochs.
    """

    summary: str
    build: Callable[..., Any]
    knobs: tuple = ()
    spans_run: bool = False


def library():
    """The ``jaxopt_dl`` package, imported when a command first needs it (so that a bad
    invocation is refused before JAX starts).

    Returns:
      The module.
    """
    import jaxopt_dl

    return jaxopt_dl


SCHEDULE_KNOBS = {
    "decay_rate": 0.5,
    "pct_start": 0.3,
    "div_factor": 25.0,
    "final_div_factor": 1e4,
    "plateau_patience": 2,
}
"""The schedules' own flags (``dest``) and their defaults."""

SCHEDULES = {
    "constant": Schedule("--lr throughout", lambda c, total, per_epoch: c["lr"]),
    "cosine": Schedule(
        "cosine decay from --lr to 0 over the run",
        lambda c, total, per_epoch: library().cosine_decay_schedule(c["lr"], total),
        spans_run=True,
    ),
    "warmup_cosine": Schedule(
        "linear warmup from 0 over --warmup-steps (default: the first 5%% of the steps), "
        "then cosine decay to 0",
        lambda c, total, per_epoch: library().cosine_decay_schedule(c["lr"], total),
        spans_run=True,
    ),
    "step": Schedule(
        "multiply by --decay-rate after each third of the run",
        lambda c, total, per_epoch: library().step_decay(
            c["lr"], c["decay_rate"], max(1, total // 3)
        ),
        ("decay_rate",),
        spans_run=True,
    ),
    "exponential": Schedule(
        "multiply by --decay-rate per epoch, smoothly",
        lambda c, total, per_epoch: library().exponential_decay(
            c["lr"], per_epoch, c["decay_rate"]
        ),
        ("decay_rate",),
    ),
    "inverse_time": Schedule(
        "--lr / (1 + decay-rate * epochs so far)",
        lambda c, total, per_epoch: library().inverse_time_decay(
            c["lr"], c["decay_rate"], per_epoch
        ),
        ("decay_rate",),
    ),
    "onecycle": Schedule(
        "one cycle: cosine up from --lr / --div-factor to --lr over "
        "--pct-start of the run, then down to --lr / (--div-factor * --final-div-factor)",
        lambda c, total, per_epoch: library().cosine_onecycle_schedule(
            total, c["lr"], c["pct_start"], c["div_factor"], c["final_div_factor"]
        ),
        ("pct_start", "div_factor", "final_div_factor"),
        spans_run=True,
    ),
    "plateau": Schedule(
        "--lr, multiplied by --decay-rate when the validation loss (the training loss "
        "with --val-fraction 0) has not improved for more than --plateau-patience epochs",
        lambda c, total, per_epoch: c["lr"],
        ("decay_rate", "plateau_patience"),
    ),
}
DTYPES = ("float32", "bfloat16", "float16")

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


def non_negative_int(text: str) -> int:
    """argparse type: an integer of at least 0.

    Args:
      text: the flag's value.

    Returns:
      The integer.
    """
    return _parsed(text, int, lambda value: value >= 0, "a non-negative integer")


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


def opt_arg(text: str) -> tuple:
    """``NAME=VALUE`` of ``--opt-arg``: the value as a Python literal (else the string).

    Args:
      text: the flag's value.

    Returns:
      ``(name, value)``.

    Raises:
      argparse.ArgumentTypeError: without ``=`` or a name.
    """
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


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
    add(
        "--opt-arg",
        dest="opt_arg",
        action="append",
        type=opt_arg,
        default=None,
        metavar="NAME=VALUE",
        shown="none",
        help="any other argument of the optimizer's function, e.g. --opt-arg "
        "nesterov=True (a Python literal; repeatable)",
    )
    for flag, moment in (("mu-dtype", "first"), ("nu-dtype", "second")):
        add(
            f"--{flag}",
            choices=DTYPES,
            default=None,
            shown="the parameters' dtype",
            help=f"storage dtype of the {moment}-moment average, for the optimizers "
            f"whose factory takes {flag.replace('-', '_')}",
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
    for flag in DTYPE_FLAGS:
        if getattr(args, flag) is not None and flag not in _dtype_flags(args.optimizer):
            raise UsageError(
                f"--{flag.replace('_', '-')} does not apply to --optimizer {args.optimizer} "
                f"(it applies to {', '.join(dtype_users(flag))})"
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
    for name, value in getattr(args, "opt_arg", None) or ():
        if name not in defaults or name == "learning_rate":
            raise UsageError(
                f"--opt-arg {name}=... is not an argument of --optimizer {args.optimizer} "
                f"(its arguments: {', '.join(n for n in defaults if n != 'learning_rate')})"
            )
        resolved[name] = value
    for flag, name in _dtype_flags(args.optimizer).items():
        resolved[name] = getattr(args, flag, None)
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
        if k not in ("command", "run", "opt_arg", *OPTIMIZER_FLAGS, *DTYPE_FLAGS)
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
    schedule = SCHEDULES[args.schedule]
    for knob, default in SCHEDULE_KNOBS.items():
        value = getattr(args, knob)
        config[knob] = (default if value is None else value) if knob in schedule.knobs else None
    return config


def _dtype_flags(optimizer: str) -> dict:
    """``{flag dest: argument}`` of the storage-dtype flags the optimizer's factory takes."""
    factory = getattr(library(), OPTIMIZERS[optimizer].factory)
    parameters = inspect.signature(factory).parameters
    return {flag: flag for flag in DTYPE_FLAGS if flag in parameters}


DTYPE_FLAGS = ("mu_dtype", "nu_dtype")
"""Flags of the moments' storage dtypes (each applies where the factory takes it)."""


def dtype_users(flag: str) -> list[str]:
    """The optimizers whose factory takes a storage-dtype argument.

    Args:
      flag: ``"mu_dtype"`` or ``"nu_dtype"``.

    Returns:
      Their names, in registry order.
    """
    return [name for name in OPTIMIZERS if flag in _dtype_flags(name)]


FLAG_OF_ARGUMENT = {
    "learning_rate": "--lr",
    "init_value": "--lr",
    "peak_value": "--lr",
    "drop": "--decay-rate",
    "decay_rate": "--decay-rate",
    "factor": "--decay-rate",
    "patience": "--plateau-patience",
    "pct_start": "--pct-start",
    "div_factor": "--div-factor",
    "final_div_factor": "--final-div-factor",
    "mu_dtype": "--mu-dtype",
    "nu_dtype": "--nu-dtype",
    "max_norm": "--clip-norm",
    "weight_decay": "--weight-decay",
}
"""The flag that sets a library argument (beside each optimizer's own in :data:`OPTIMIZERS`)."""


def flag_error(error: Exception, optimizer: str) -> "UsageError":
    """A library error about its arguments, rewritten with the flags that set them.

    ``beta must be in [0, 1), got beta=1.5`` becomes ``--momentum must be in [0, 1),
    got 1.5``.

    Args:
      error: the ``ValueError``/``TypeError`` raised while building the optimizer.
      optimizer: the ``--optimizer`` name.

    Returns:
      The :class:`UsageError` to raise.
    """
    flags = {
        arg: f"--{flag.replace('_', '-')}" for flag, arg in OPTIMIZERS[optimizer].flags.items()
    }
    text = " ".join(str(error).split())
    for argument, flag in {**FLAG_OF_ARGUMENT, **flags}.items():
        text = re.sub(rf"\bgot {argument}=", "got ", text)
        text = re.sub(rf"(?<![-\w]){argument}\b", flag, text)
    return UsageError(text)


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

    def build(learning_rate):
        try:
            return factory(learning_rate, **arguments)
        except (TypeError, ValueError) as error:
            raise flag_error(error, name) from None

    return build


def load_split(config: dict) -> tuple:
    """``(train, val or None, test)`` of the dataset: validation is a stratified
    ``val_fraction`` of the training split, drawn with ``seed`` (the same in every command).

    Args:
      config: from :func:`resolve_config` (``seed``, ``val_fraction``, and
        ``standardize``, default ``"global"``).

    Returns:
      The three ``(x, y)`` pairs.
    """
    train, test = load_dataset(config)
    if not config["val_fraction"]:
        return train, None, test
    from sklearn.model_selection import train_test_split

    x_tr, x_val, y_tr, y_val = train_test_split(
        *train, test_size=config["val_fraction"], random_state=config["seed"], stratify=train[1]
    )
    return (x_tr, y_tr), (x_val, y_val), test


def counted(number: int, noun: str) -> str:
    """``"1 epoch"``, ``"2 epochs"``.

    Args:
      number: how many.
      noun: the singular noun.

    Returns:
      The text.
    """
    return f"{number} {noun}{'' if number == 1 else 's'}"


def load_dataset(config: dict):
    """The ``(train, test)`` arrays of a resolved config's ``dataset`` and ``standardize``.

    Args:
      config: from :func:`resolve_config`.

    Returns:
      ``((x_train, y_train), (x_test, y_test))`` as :func:`jaxopt_dl.data.load_digits`.
    """
    data = library().data
    standardize = {"global": "global", "feature": True, "none": False}[
        config.get("standardize", "global")
    ]
    if config.get("dataset") == "mnist1d":
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
