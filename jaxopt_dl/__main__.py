"""The main job: ``python -m jaxopt_dl train --dataset digits --model resnet --optimizer adam ...``.

Trains a model on the digits with any optimizer of the library, shows a progress bar,
and writes ``DIR/metrics.json`` (``test_accuracy``, ``history``, ``config``),
``DIR/curves.png`` and ``DIR/params.msgpack``. Bad names or values exit with status 2
and one line; a non-finite loss stops with a message naming the step and the first
layer whose gradient went non-finite, keeping the last finite params in ``DIR``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from typing import Any, Callable, Optional, Sequence

OPTIMIZERS = (
    "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw",
    "adamax", "nadam", "amsgrad", "lamb", "lion", "adafactor", "noisy_sgd",
)
MODELS = ("mlp", "cnn", "resnet")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "step", "exponential", "inverse_time")
INITS = (
    "he_normal", "he_uniform", "glorot_uniform", "glorot_normal", "normalized_uniform",
    "lecun_normal", "orthogonal", "sparse", "small_random",
)
MOMENTUM_FORMS = ("velocity", "ema", "trace")
DATASETS = ("digits",)
STANDARDIZE = ("global", "feature", "none")


TOOLS = (
    ("lr-find", "jaxopt_dl.lr_finder",
     "learning-rate range test: one vmapped short run per rate, plot, suggestion and JSON"),
    ("diagnose", "jaxopt_dl.checklist",
     "the lectures' debugging checklist, automated: Markdown report with pass/warn per item"),
)


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (``prog: error: ...``) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m jaxopt_dl", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    train = commands.add_parser("train", help="train a classifier and write metrics/curves")
    add = train.add_argument
    add("--dataset", choices=DATASETS, default="digits")
    add("--model", choices=MODELS, default="mlp")
    add("--optimizer", choices=OPTIMIZERS, default="adam")
    add("--lr", type=float, default=1e-3, help="learning rate (peak of the schedule)")
    add("--epochs", type=_positive_int, default=10)
    add("--batch-size", type=_positive_int, default=64)
    add("--seed", type=int, default=0)
    add("--out", default="runs/train", help="output folder")
    add("--momentum", "--beta", dest="momentum", type=float, default=None,
        help="momentum / beta (sgd, momentum, nesterov, rmsprop)")
    add("--momentum-form", choices=MOMENTUM_FORMS, default="velocity")
    add("--b1", type=float, default=None)
    add("--b2", type=float, default=None)
    add("--eps", type=float, default=None)
    add("--decay", type=float, default=None, help="rmsprop decay / adadelta rho")
    add("--weight-decay", type=float, default=None,
        help="decoupled for adamw/lamb/adadelta, else an L2 term added to the gradient")
    add("--clip-norm", type=float, default=None, help="clip the gradient's global norm")
    add("--schedule", choices=SCHEDULES, default="constant")
    add("--decay-rate", type=float, default=0.5,
        help="step: factor per third of the run; exponential: per epoch; inverse_time: rate")
    add("--batchnorm", action=argparse.BooleanOptionalAction, default=None,
        help="batch norm (default: on for resnet, off otherwise)")
    add("--dropout", type=float, default=0.0)
    add("--hidden", type=_widths, default=(128, 64), metavar="W1,W2,...",
        help="hidden widths of --model mlp")
    add("--standardize", choices=STANDARDIZE, default="global",
        help="input scaling with training-set statistics: one mean/std for all pixels, "
             "one per pixel, or raw pixels")
    add("--init", choices=INITS, default="he_normal")
    add("--sparse-k", type=_positive_int, default=15, help="k of --init sparse")
    add("--grad-accum", type=_positive_int, default=1)
    add("--early-stopping", type=_positive_int, default=None, metavar="PATIENCE",
        help="stop after PATIENCE epochs without validation improvement (15%% of train held out)")
    add("--max-nonfinite", type=_positive_int, default=5,
        help="stop after this many consecutive non-finite steps")
    add("--checkpoint-dir", default=None, metavar="DIR",
        help="save the full training state after every epoch (atomic)")
    add("--resume", action=argparse.BooleanOptionalAction, default=True,
        help="continue from the latest checkpoint in --checkpoint-dir (bit-identical)")
    add("--no-progress", action="store_true")
    for name, module, text in TOOLS:
        tool = commands.add_parser(name, help=text, description=text)
        importlib.import_module(module).add_arguments(tool)
    return parser


def _schedule(args, steps_per_epoch: int):
    import jaxopt_dl as jdl

    total = max(1, args.epochs * steps_per_epoch)
    if args.schedule == "constant":
        return args.lr
    if args.schedule == "cosine":
        return jdl.cosine_decay_schedule(args.lr, total)
    if args.schedule == "warmup_cosine":  # linear warmup over the first 5% of the steps
        return jdl.warmup_cosine_decay_schedule(0.0, args.lr, max(1, total // 20), total)
    if args.schedule == "step":
        return jdl.step_decay(args.lr, args.decay_rate, max(1, total // 3))
    if args.schedule == "exponential":
        return jdl.exponential_decay(args.lr, steps_per_epoch, args.decay_rate)
    return jdl.inverse_time_decay(args.lr, args.decay_rate, steps_per_epoch)


def build_optimizer(args, steps_per_epoch: int):
    """The optimizer named by ``args.optimizer`` with the flags that apply to it."""
    import jaxopt_dl as jdl

    lr = _schedule(args, steps_per_epoch)
    given = lambda **kw: {k: v for k, v in kw.items() if v is not None}  # noqa: E731
    adam_like = given(b1=args.b1, b2=args.b2, eps=args.eps)
    decoupled = args.optimizer in ("adamw", "lamb", "adadelta")
    wd = given(weight_decay=args.weight_decay) if decoupled else {}
    name = args.optimizer
    factories: dict[str, Callable[[], Any]] = {
        "sgd": lambda: jdl.sgd(lr, **given(momentum=args.momentum)),
        "momentum": lambda: jdl.momentum(lr, **given(beta=args.momentum), form=args.momentum_form),
        "nesterov": lambda: jdl.momentum(lr, **given(beta=args.momentum), nesterov=True,
                                         form=args.momentum_form),
        "adagrad": lambda: jdl.adagrad(lr, **given(eps=args.eps)),
        "rmsprop": lambda: jdl.rmsprop(lr, **given(decay=args.decay, eps=args.eps,
                                                   momentum=args.momentum)),
        "adadelta": lambda: jdl.adadelta(lr, **given(rho=args.decay, eps=args.eps), **wd),
        "adam": lambda: jdl.adam(lr, **adam_like),
        "adamw": lambda: jdl.adamw(lr, **adam_like, **wd),
        "adamax": lambda: jdl.adamax(lr, **adam_like),
        "nadam": lambda: jdl.nadam(lr, **adam_like),
        "amsgrad": lambda: jdl.amsgrad(lr, **adam_like),
        "lamb": lambda: jdl.lamb(lr, **adam_like, **wd),
        "lion": lambda: jdl.lion(lr, **given(b1=args.b1, b2=args.b2), **wd),
        "adafactor": lambda: jdl.adafactor(lr),
        "noisy_sgd": lambda: jdl.noisy_sgd(lr, key=args.seed),
    }
    tx = factories[name]()
    blocks = []
    if args.clip_norm is not None:
        blocks.append(jdl.clip_by_global_norm(args.clip_norm))
    if args.weight_decay is not None and not decoupled:
        blocks.append(jdl.add_l2(args.weight_decay))
    return jdl.chain(*blocks, tx) if blocks else tx


def build_model(args):
    import jaxopt_dl as jdl

    init = jdl.initializers.sparse(args.sparse_k) if args.init == "sparse" else (
        getattr(jdl.initializers, args.init)())
    batchnorm = args.batchnorm if args.batchnorm is not None else args.model == "resnet"
    common = dict(use_batchnorm=batchnorm, dropout_rate=args.dropout, kernel_init=init)
    if args.model == "mlp":
        return jdl.models.MLP(hidden=args.hidden, **common)
    return {"cnn": jdl.models.CNN, "resnet": jdl.models.ResNet}[args.model](**common)


def _load(args):
    import jaxopt_dl as jdl

    standardize = {"global": "global", "feature": True, "none": False}[args.standardize]
    train, test = jdl.data.load_digits(seed=args.seed, standardize=standardize)
    val = test
    if args.early_stopping is not None:
        from sklearn.model_selection import train_test_split

        x_tr, x_val, y_tr, y_val = train_test_split(
            *train, test_size=0.15, random_state=args.seed, stratify=train[1])
        train, val = (x_tr, y_tr), (x_val, y_val)
    return train, val, test


def train(args) -> int:
    import jax

    import jaxopt_dl as jdl
    from jaxopt_dl import training

    (x, y), val, test = _load(args)
    steps_per_epoch = len(x) // args.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"--batch-size must be at most {len(x)}, got {args.batch_size}")
    if args.batch_size % args.grad_accum:
        raise ValueError(
            f"--batch-size must be a multiple of --grad-accum, got {args.batch_size} and "
            f"{args.grad_accum}")
    tx = build_optimizer(args, steps_per_epoch)
    model = build_model(args)
    state = training.create_train_state(model, tx, jax.random.key(args.seed), x[:1])
    config = {k: v for k, v in vars(args).items() if k != "command"}
    os.makedirs(args.out, exist_ok=True)
    params_path = os.path.join(args.out, "params.msgpack")
    start = time.perf_counter()
    try:
        state, history = training.fit(
            state, (x, y), val, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
            grad_accum_steps=args.grad_accum, early_stopping_patience=args.early_stopping,
            max_consecutive_nonfinite=args.max_nonfinite, progress=not args.no_progress,
            checkpoint_dir=args.checkpoint_dir, resume=args.resume)
    except training.NonFiniteError as error:
        jdl.initializers.save_params(error.state.params, params_path)
        _write(args.out, error.history, config, None, str(error))
        print(f"error: {error} Last finite params: {params_path}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    test_loss, test_accuracy = training.evaluate(state, test)
    jdl.initializers.save_params(state.params, params_path)
    metrics_path = _write(args.out, history, config, (test_loss, test_accuracy, seconds), None)
    print(f"test accuracy {test_accuracy:.4f} (loss {test_loss:.4f}) after "
          f"{len(history.epoch)} epochs in {seconds:.1f} s")
    print(f"wrote {metrics_path}, {os.path.join(args.out, 'curves.png')} and {params_path}")
    return 0


def _write(out: str, history, config: dict, result: Optional[tuple], error: Optional[str]) -> str:
    from jaxopt_dl.training import plot_history

    metrics = {"test_accuracy": None, "history": history.to_dict(), "config": config}
    if result is not None:
        metrics.update(test_accuracy=result[1], test_loss=result[0], train_seconds=result[2])
    if error is not None:
        metrics["error"] = error
    path = os.path.join(out, "metrics.json")
    with open(path, "w") as f:
        json.dump(metrics, f, indent=1)
    plot_history(history, os.path.join(out, "curves.png"))
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command != "train":
            return importlib.import_module(dict((n, m) for n, m, _ in TOOLS)[args.command]).run(args)
        return train(args)
    except ValueError as error:
        message = " ".join(str(error).split())
        print(f"{parser.prog} {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
