"""The command line: ``python -m jaxopt_dl <command> ...``.

``train`` trains a model on the digits with any optimizer of the library. It prints one
line per epoch (and a progress bar within the epoch on a terminal), holds out
``--val-fraction`` of the training data for validation, reports the test set once at
the end, and writes ``OUT/metrics.json`` (``test_loss``, ``test_accuracy``, the
history, the resolved configuration, package versions and the device),
``OUT/curves.png`` and ``OUT/params.msgpack``. ``lr-find`` runs the learning-rate range
test of :func:`jaxopt_dl.lr_find` and ``diagnose`` the debugging checklist of
:func:`jaxopt_dl.diagnose`, on the same models and optimizers. Bad invocations exit
with status 2 and one line, before JAX starts where the flags alone show it.

Commands live in :data:`COMMANDS` (name -> :class:`Command`); optimizers, schedules,
models and initializers in one registry each, shared by every command, from which the
argument choices, the help text and the checks that a flag applies are derived.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import tempfile
import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

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
    "sgd": Optimizer("stochastic gradient descent, with --momentum a heavy-ball velocity",
                     "sgd", {"momentum": "momentum"}),
    "momentum": Optimizer("heavy-ball momentum, written in the form --momentum-form",
                          "momentum", {"momentum": "beta", "momentum_form": "form"}),
    "nesterov": Optimizer("Nesterov momentum", "momentum",
                          {"momentum": "beta", "momentum_form": "form"}, {"nesterov": True}),
    "adagrad": Optimizer("AdaGrad", "adagrad", {"eps": "eps"}),
    "rmsprop": Optimizer("RMSProp", "rmsprop",
                         {"decay": "decay", "eps": "eps", "momentum": "momentum"}),
    "adadelta": Optimizer("AdaDelta", "adadelta",
                          {"decay": "rho", "eps": "eps", "weight_decay": "weight_decay"}),
    "adam": Optimizer("Adam", "adam", ADAM_FLAGS),
    "adamw": Optimizer("Adam with decoupled weight decay", "adamw",
                       {**ADAM_FLAGS, "weight_decay": "weight_decay"}),
    "adamax": Optimizer("AdaMax (Adam with the infinity norm)", "adamax", ADAM_FLAGS),
    "nadam": Optimizer("Adam with Nesterov momentum", "nadam", ADAM_FLAGS),
    "radam": Optimizer("RAdam (Adam with a rectified warmup of the second moment)", "radam",
                       ADAM_FLAGS),
    "amsgrad": Optimizer("AMSGrad (Adam with a non-decreasing second moment)", "amsgrad",
                         ADAM_FLAGS),
    "lamb": Optimizer("LAMB (layer-wise trust ratio)", "lamb",
                      {**ADAM_FLAGS, "weight_decay": "weight_decay"}),
    "lion": Optimizer("Lion (sign of an interpolated momentum)", "lion",
                      {"b1": "b1", "b2": "b2", "weight_decay": "weight_decay"}),
    "adafactor": Optimizer("Adafactor (factored second moments)", "adafactor", {}),
    "noisy_sgd": Optimizer("SGD with annealed Gaussian gradient noise (seeded by --seed)",
                           "noisy_sgd", {}),
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


def _jdl():
    import jaxopt_dl

    return jaxopt_dl


SCHEDULES = {
    "constant": Schedule("--lr throughout", lambda lr, total, per_epoch, rate: lr),
    "cosine": Schedule(
        "cosine decay from --lr to 0 over the run",
        lambda lr, total, per_epoch, rate: _jdl().cosine_decay_schedule(lr, total)),
    "warmup_cosine": Schedule(
        "linear warmup from 0 over the first 5%% of the steps, then cosine decay to 0",
        lambda lr, total, per_epoch, rate: _jdl().warmup_cosine_decay_schedule(
            0.0, lr, max(1, total // 20), total)),
    "step": Schedule(
        "multiply by --decay-rate after each third of the run",
        lambda lr, total, per_epoch, rate: _jdl().step_decay(lr, rate, max(1, total // 3)),
        True),
    "exponential": Schedule(
        "multiply by --decay-rate per epoch, smoothly",
        lambda lr, total, per_epoch, rate: _jdl().exponential_decay(lr, per_epoch, rate),
        True),
    "inverse_time": Schedule(
        "--lr / (1 + decay-rate * epochs so far)",
        lambda lr, total, per_epoch, rate: _jdl().inverse_time_decay(lr, rate, per_epoch),
        True),
}
DECAY_RATE = 0.5

MODELS = {
    "mlp": "multilayer perceptron with --hidden widths",
    "cnn": "small convolutional network",
    "resnet": "small residual network (batch norm on by default)",
}
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
DATASETS = {"digits": "the 8x8 handwritten digits of scikit-learn (bundled)"}
STANDARDIZE = {
    "global": "one mean and std over all pixels",
    "feature": "one mean and std per pixel",
    "none": "raw pixel values",
}


def _listing(registry: dict) -> str:
    return "; ".join(f"{name}: {entry if isinstance(entry, str) else entry.summary}"
                     for name, entry in registry.items())


def _applies_to(flag: str) -> list[str]:
    return [name for name, opt in OPTIMIZERS.items() if flag in opt.flags]


# --------------------------------------------------------------------------
# Argument types
# --------------------------------------------------------------------------


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (``prog: error: ...``) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text}")
    return value


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated positive integers like 256,128, got {text}")
    return widths


# --------------------------------------------------------------------------
# Flags shared by the commands
# --------------------------------------------------------------------------

OPTIMIZER_FLAGS = ("momentum", "momentum_form", "b1", "b2", "eps", "decay")
"""Flags of the optimizers' own arguments (each applies to some of :data:`OPTIMIZERS`)."""


def _adder(parser: argparse.ArgumentParser) -> Callable[..., None]:
    """``add(*names, help, default, shown=None, **kwargs)``: a flag whose help ends with
    its default (``shown``, where the default is None or not what the user sees)."""
    def add(*names, help, default, shown=None, **kwargs):  # noqa: A002
        shown = default if shown is None else shown
        parser.add_argument(*names, default=default, help=f"{help} (default: {shown})",
                            **kwargs)

    return add


def _add_model_flags(add: Callable[..., None]) -> None:
    add("--model", choices=MODELS, default="mlp", help=_listing(MODELS))
    add("--hidden", type=_widths, default=None, metavar="W1,W2,...",
        shown=",".join(map(str, HIDDEN)), help="hidden widths of --model mlp")
    add("--batchnorm", action=argparse.BooleanOptionalAction, default=None,
        shown="on for resnet, off otherwise", help="batch normalization")
    add("--dropout", type=float, default=0.0, help="dropout rate")
    add("--init", choices=INITS, default="he_normal", help=_listing(INITS))
    add("--sparse-k", type=_positive_int, default=None, shown=SPARSE_K,
        help="non-zero incoming weights per unit of --init sparse")


def _add_optimizer_flags(add: Callable[..., None], lr_help: Optional[str]) -> None:
    """``--optimizer``, ``--lr`` (unless ``lr_help`` is None) and the optimizers' own."""
    own = "the optimizer's own"
    add("--optimizer", choices=OPTIMIZERS, default="adam", help=_listing(OPTIMIZERS))
    if lr_help is not None:
        add("--lr", type=float, default=1e-3, help=lr_help)
    add("--momentum", "--beta", dest="momentum", type=float, default=None, shown=own,
        help="momentum coefficient, for " + ", ".join(_applies_to("momentum")))
    add("--momentum-form", choices=MOMENTUM_FORMS, default=None, shown="velocity",
        help="how momentum is written (velocity: v = beta v - lr g, as Goodfellow et "
             "al.; ema: m = beta m + (1 - beta) g, steps 1 - beta times smaller; trace: "
             "m = g + beta m, as optax and torch), for " +
             ", ".join(_applies_to("momentum_form")))
    add("--b1", type=float, default=None, shown=own,
        help="decay of the first-moment average, for " + ", ".join(_applies_to("b1")))
    add("--b2", type=float, default=None, shown=own,
        help="decay of the second-moment average, for " + ", ".join(_applies_to("b2")))
    add("--eps", type=float, default=None, shown=own,
        help="denominator offset, for " + ", ".join(_applies_to("eps")))
    add("--decay", type=float, default=None, shown=own,
        help="decay of the squared-gradient average (adadelta's rho), for " +
             ", ".join(_applies_to("decay")))


def _add_run_flags(add: Callable[..., None], out: str, writes: str) -> None:
    """``--batch-size``, ``--seed`` and ``--out`` (default ``out``, holding ``writes``)."""
    add("--batch-size", type=_positive_int, default=64, help="examples per step")
    add("--seed", type=int, default=0,
        help="seed of the initialization, the validation split and the shuffles")
    add("--out", default=out, help=f"output folder for {writes}")


def _check_shared(args) -> None:
    """Refuse optimizer flags that do not apply to ``--optimizer``, ``--hidden`` without
    ``--model mlp`` and ``--sparse-k`` without ``--init sparse``."""
    optimizer = OPTIMIZERS[args.optimizer]
    for flag in OPTIMIZER_FLAGS:
        if getattr(args, flag) is not None and flag not in optimizer.flags:
            raise UsageError(
                f"--{flag.replace('_', '-')} does not apply to --optimizer {args.optimizer} "
                f"(it applies to {', '.join(_applies_to(flag))})")
    if args.hidden is not None and args.model != "mlp":
        raise UsageError(f"--hidden does not apply to --model {args.model} (only to mlp)")
    if args.sparse_k is not None and args.init != "sparse":
        raise UsageError(f"--sparse-k does not apply to --init {args.init} (only to sparse)")


# --------------------------------------------------------------------------
# train: arguments
# --------------------------------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``train``; every help line ends with its default.

    Args:
      parser: the ``train`` sub-parser.
    """
    add = _adder(parser)
    add("--dataset", choices=DATASETS, default="digits", help=_listing(DATASETS))
    _add_model_flags(add)
    _add_optimizer_flags(add, "learning rate (the peak of a schedule)")
    add("--schedule", choices=SCHEDULES, default="constant", help=_listing(SCHEDULES))
    add("--decay-rate", type=float, default=None, shown=DECAY_RATE,
        help="decay factor of the schedules " + ", ".join(
            n for n, s in SCHEDULES.items() if s.uses_decay_rate))
    add("--epochs", type=_positive_int, default=10, help="number of epochs")
    _add_run_flags(add, "runs/train", "metrics.json, curves.png and params.msgpack")
    add("--val-fraction", type=_fraction, default=0.1,
        help="fraction of the training data held out (stratified) for validation; "
             "0 trains on all of it")
    add("--weight-decay", type=float, default=None,
        shown="the optimizer's own, else none",
        help="weight decay: the optimizer's own decoupled decay for " +
             ", ".join(_applies_to("weight_decay")) +
             "; an L2 term added to the gradient for the others")
    add("--clip-norm", type=float, default=None, shown="no clipping",
        help="clip the gradient's global norm to this value")
    add("--standardize", choices=STANDARDIZE, default="global",
        help="input scaling with training-set statistics: " + _listing(STANDARDIZE))
    add("--grad-accum", type=_positive_int, default=1,
        help="micro-batches per step whose gradients are averaged")
    add("--early-stopping", type=_positive_int, default=None, metavar="PATIENCE",
        shown="off", help="stop after PATIENCE epochs without a lower validation loss and "
                          "keep the best epoch's params")
    add("--max-nonfinite", type=_positive_int, default=5,
        help="stop after this many consecutive steps with a NaN/Inf loss or gradient")
    add("--checkpoint-dir", default=None, metavar="DIR", shown="no checkpoints",
        help="save the full training state after every epoch")
    add("--resume", action=argparse.BooleanOptionalAction, default=True,
        help="continue from the newest checkpoint in --checkpoint-dir")
    add("--no-progress", action="store_true", default=False,
        help="no progress bar within the epoch (the per-epoch lines stay)")


def _check_applies(args) -> None:
    """Refuse flags that do not apply to the chosen optimizer, schedule, model or init."""
    _check_shared(args)
    if args.decay_rate is not None and not SCHEDULES[args.schedule].uses_decay_rate:
        users = [n for n, s in SCHEDULES.items() if s.uses_decay_rate]
        raise UsageError(f"--decay-rate does not apply to --schedule {args.schedule} "
                         f"(it applies to {', '.join(users)})")
    if args.early_stopping is not None and args.val_fraction == 0:
        raise UsageError("--early-stopping needs validation data, got --val-fraction 0")


def _check_out(out: str) -> None:
    """Create ``out`` and check that a file can be written there."""
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(f"--out {out!r} is not a writable folder: {reason}") from None


def _optimizer_arguments(args) -> dict:
    """The optimizer's arguments by name, every default filled in (for the record)."""
    optimizer = OPTIMIZERS[args.optimizer]
    defaults = inspect.signature(getattr(_jdl(), optimizer.factory)).parameters
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
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()
              if k not in ("command", "run", *OPTIMIZER_FLAGS)}
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
        if SCHEDULES[args.schedule].uses_decay_rate else None)
    return config


# --------------------------------------------------------------------------
# train: building and running
# --------------------------------------------------------------------------


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
    factory = getattr(_jdl(), OPTIMIZERS[name].factory)
    return lambda learning_rate: factory(learning_rate, **arguments)


def build_optimizer(config: dict, steps_per_epoch: int, seed: int):
    """The optimizer of a resolved ``train`` config.

    Args:
      config: from :func:`resolve_config`.
      steps_per_epoch: optimization steps per epoch (for the schedules).
      seed: the run's seed (for ``noisy_sgd``).

    Returns:
      The ``GradientTransformation``.
    """
    jdl = _jdl()
    total = max(1, config["epochs"] * steps_per_epoch)
    lr = SCHEDULES[config["schedule"]].build(config["lr"], total, steps_per_epoch,
                                             config["decay_rate"])
    tx = optimizer_factory(config, seed)(lr)
    blocks = []
    if config["clip_norm"] is not None:
        blocks.append(jdl.clip_by_global_norm(config["clip_norm"]))
    if config["weight_decay_kind"] == "l2":
        blocks.append(jdl.add_l2(config["weight_decay"]))
    return jdl.chain(*blocks, tx) if blocks else tx


def build_model(config: dict):
    """The model of a resolved config.

    Args:
      config: from :func:`resolve_config`.

    Returns:
      The flax module.
    """
    jdl = _jdl()
    init = (jdl.initializers.sparse(config["sparse_k"]) if config["init"] == "sparse"
            else getattr(jdl.initializers, config["init"])())
    common = dict(use_batchnorm=config["batchnorm"], dropout_rate=config["dropout"],
                  kernel_init=init)
    if config["model"] == "mlp":
        return jdl.models.MLP(hidden=tuple(config["hidden"]), **common)
    return {"cnn": jdl.models.CNN, "resnet": jdl.models.ResNet}[config["model"]](**common)


def _load(config: dict):
    """``(train, val or None, test)``; validation is a stratified part of the training data."""
    jdl = _jdl()
    standardize = {"global": "global", "feature": True, "none": False}[config["standardize"]]
    train, test = jdl.data.load_digits(seed=config["seed"], standardize=standardize)
    if not config["val_fraction"]:
        return train, None, test
    from sklearn.model_selection import train_test_split

    x_tr, x_val, y_tr, y_val = train_test_split(
        *train, test_size=config["val_fraction"], random_state=config["seed"],
        stratify=train[1])
    return (x_tr, y_tr), (x_val, y_val), test


def _environment() -> dict:
    import flax
    import jax
    import optax

    device = jax.devices()[0]
    return {
        "versions": {"jaxopt_dl": _jdl().__version__, "jax": jax.__version__,
                     "optax": optax.__version__, "flax": flax.__version__},
        "device": f"{device.platform} ({device.device_kind}), {jax.device_count()} device(s)",
    }


def run_train(args) -> int:
    """The ``train`` command.

    Args:
      args: the parsed arguments.

    Returns:
      The exit status: 0, or 1 after a non-finite loss.
    """
    _check_applies(args)
    _check_out(args.out)
    config = resolve_config(args)

    import jax

    from jaxopt_dl import training

    jdl = _jdl()
    (x, y), val, test = _load(config)
    steps_per_epoch = len(x) // args.batch_size
    if steps_per_epoch == 0:
        raise UsageError(f"--batch-size must be at most {len(x)}, got {args.batch_size}")
    if args.batch_size % args.grad_accum:
        raise UsageError(f"--batch-size must be a multiple of --grad-accum, got "
                         f"{args.batch_size} and {args.grad_accum}")
    tx = build_optimizer(config, steps_per_epoch, args.seed)
    state = training.create_train_state(build_model(config), tx, jax.random.key(args.seed),
                                        x[:1])
    callbacks = [training.ProgressLogger(bar=not args.no_progress),
                 training.NonFiniteGuard(args.max_nonfinite)]
    if args.early_stopping is not None:
        callbacks.append(training.EarlyStopping(args.early_stopping))
    if args.checkpoint_dir is not None:
        callbacks.append(training.ModelCheckpoint(args.checkpoint_dir, resume=args.resume))
    record = {**_environment(), "config": config}
    params_path = os.path.join(args.out, "params.msgpack")
    start = time.perf_counter()
    try:
        state, history = training.fit(
            state, (x, y), val, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
            callbacks=callbacks, config=training.FitConfig(grad_accum_steps=args.grad_accum))
    except training.NonFiniteError as error:
        jdl.initializers.save_params(error.state.params, params_path)
        _write(args.out, error.history, {**record, "error": str(error)})
        print(f"error: {error} Last finite params: {params_path}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    test_loss, test_accuracy = training.evaluate(state, test)
    jdl.initializers.save_params(state.params, params_path)
    metrics_path = _write(args.out, history, {
        "test_loss": test_loss, "test_accuracy": test_accuracy, "train_seconds": seconds,
        **record})
    print(f"Test - loss {test_loss:.4g} - acc {test_accuracy:.4g} "
          f"({len(history.epoch)} epochs in {seconds:.1f}s)")
    print(f"wrote {metrics_path}, {os.path.join(args.out, 'curves.png')} and {params_path}")
    return 0


def _write(out: str, history, record: dict) -> str:
    from jaxopt_dl.training import plot_history

    metrics = {"test_loss": None, "test_accuracy": None, **record,
               "history": history.to_dict()}
    path = os.path.join(out, "metrics.json")
    with open(path, "w") as f:
        json.dump(metrics, f, indent=1)
    plot_history(history, os.path.join(out, "curves.png"))
    return path


# --------------------------------------------------------------------------
# lr-find and diagnose
# --------------------------------------------------------------------------


def add_lr_find_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``lr-find``; every help line ends with its default.

    Args:
      parser: the ``lr-find`` sub-parser.
    """
    from jaxopt_dl.lr_finder import RULES

    add = _adder(parser)
    _add_model_flags(add)
    _add_optimizer_flags(add, lr_help=None)
    add("--min-lr", type=float, default=1e-5, help="smallest rate")
    add("--max-lr", type=float, default=1.0, help="largest rate")
    add("--num", type=_positive_int, default=24, help="rates in the log-spaced grid")
    add("--steps", type=_positive_int, default=100, help="training steps per rate")
    add("--rule", choices=RULES, default="min_loss_div_10",
        help="how the rate is suggested: " + ", ".join(RULES))
    _add_run_flags(add, "runs/lr_find", "lr_find.json and lr_find.png")


def add_diagnose_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``diagnose``; every help line ends with its default.

    Args:
      parser: the ``diagnose`` sub-parser.
    """
    add = _adder(parser)
    _add_model_flags(add)
    _add_optimizer_flags(add, "learning rate")
    add("--steps", type=_positive_int, default=150,
        help="minibatch steps of the short training run")
    add("--overfit-steps", type=_positive_int, default=200,
        help="full-batch steps on the small batch")
    add("--overfit-examples", type=_positive_int, default=10,
        help="examples in the small batch")
    _add_run_flags(add, "runs/diagnose", "report.md, diagnose.json and the figures")


def _prepare(args) -> tuple[dict, Any, tuple]:
    """Check ``args`` (before JAX starts), then ``(config, model, digits training split)``."""
    _check_shared(args)
    _check_out(args.out)
    config = resolve_config(args)
    train, _ = _jdl().data.load_digits(seed=args.seed, standardize="global")
    return config, build_model(config), train


def run_lr_find(args) -> int:
    """The ``lr-find`` command: writes ``lr_find.json`` and ``lr_find.png``, prints the rate.

    Args:
      args: the parsed arguments.

    Returns:
      The exit status (0).
    """
    from jaxopt_dl.lr_finder import lr_find, plot_lr_find

    config, model, train = _prepare(args)
    result = lr_find(
        model, train, optimizer_factory(config, args.seed), min_lr=args.min_lr,
        max_lr=args.max_lr, num=args.num, steps=args.steps, batch_size=args.batch_size,
        seed=args.seed, rule=args.rule)
    report = {**result.to_dict(), "config": config}
    json_path = os.path.join(args.out, "lr_find.json")
    with open(json_path, "w") as f:
        json.dump(report, f, indent=1)
    plot_path = os.path.join(args.out, "lr_find.png")
    plot_lr_find(result, plot_path)
    print(f"suggested learning rate {result.suggestion:.3g} ({report['rule_description']}); "
          f"steepest descent at {result.suggestions['steepest']:.3g}; {args.num} rates x "
          f"{args.steps} steps in {result.seconds:.1f} s")
    print(f"wrote {json_path} and {plot_path}")
    return 0


def run_diagnose(args) -> int:
    """The ``diagnose`` command: the checklist on the digits training split, with its report.

    Args:
      args: the parsed arguments.

    Returns:
      The exit status (0; the report says which items warn).
    """
    from jaxopt_dl.checklist import diagnose

    config, model, train = _prepare(args)
    report = diagnose(
        model, train, optimizer_factory(config, args.seed)(args.lr),
        overfit_examples=args.overfit_examples, overfit_steps=args.overfit_steps,
        train_steps=args.steps, batch_size=args.batch_size, seed=args.seed, out=args.out)
    for item in report.items:
        print(f"{item.status.upper():4}  {item.title}: {item.measured}")
    verdict = "every item passes" if report.ok else f"warnings: {', '.join(report.warnings)}"
    print(f"{verdict}; wrote {os.path.join(args.out, 'report.md')}")
    return 0


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


class Command(NamedTuple):
    """A subcommand: adding one is one entry in :data:`COMMANDS`.

    Attributes:
      summary: one line for ``--help``.
      add_arguments: ``add_arguments(parser)`` declares its flags.
      run: ``run(args) -> exit status``; a ``ValueError`` becomes one line and status 2.
    """

    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS = {
    "train": Command("train a classifier on the digits and write metrics, curves and params",
                     add_train_arguments, run_train),
    "lr-find": Command("learning-rate range test: one vmapped run per rate on a log grid, "
                       "plot, suggested rate and JSON", add_lr_find_arguments, run_lr_find),
    "diagnose": Command("the lectures' debugging checklist, automated: a Markdown report with "
                        "pass/warn per item and figures", add_diagnose_arguments, run_diagnose),
}

DESCRIPTION = ("jaxopt_dl command line. Run 'python -m jaxopt_dl COMMAND --help' for the "
               "flags of a command.")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command in :data:`COMMANDS`.

    Returns:
      The ``argparse`` parser.
    """
    parser = _OneLineParser(prog=PROG, description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser,
                                     metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.summary, description=command.summary)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` and run the command.

    Args:
      argv: the arguments (default ``sys.argv[1:]``).

    Returns:
      The exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        message = " ".join(str(error).split())
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
