"""The ``train`` command: a model on the digits with any optimizer of the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from jaxopt_dl.cli.registry import (
    DATASETS,
    DECAY_RATE,
    SCHEDULES,
    STANDARDIZE,
    UsageError,
    add_model_flags,
    add_optimizer_flags,
    add_run_flags,
    adder,
    applies_to,
    build_model,
    check_out,
    check_shared,
    fraction,
    library,
    listing,
    load_dataset,
    optimizer_factory,
    positive_int,
    resolve_config,
)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``train``; every help line ends with its default.

    Args:
      parser: the ``train`` sub-parser.
    """
    add = adder(parser)
    add("--dataset", choices=DATASETS, default="digits", help=listing(DATASETS))
    add_model_flags(add)
    add_optimizer_flags(add, "learning rate (the peak of a schedule)")
    add("--schedule", choices=SCHEDULES, default="constant", help=listing(SCHEDULES))
    add(
        "--decay-rate",
        type=float,
        default=None,
        shown=DECAY_RATE,
        help="decay factor of the schedules "
        + ", ".join(n for n, s in SCHEDULES.items() if s.uses_decay_rate),
    )
    add("--epochs", type=positive_int, default=10, help="number of epochs")
    add_run_flags(add, "runs/train", "metrics.json, curves.png and params.msgpack")
    add(
        "--val-fraction",
        type=fraction,
        default=0.1,
        help="fraction of the training data held out (stratified) for validation; "
        "0 trains on all of it",
    )
    add(
        "--weight-decay",
        type=float,
        default=None,
        shown="the optimizer's own, else none",
        help="weight decay: the optimizer's own decoupled decay for "
        + ", ".join(applies_to("weight_decay"))
        + "; an L2 term added to the gradient for the others",
    )
    add(
        "--clip-norm",
        type=float,
        default=None,
        shown="no clipping",
        help="clip the gradient's global norm to this value",
    )
    add(
        "--standardize",
        choices=STANDARDIZE,
        default="global",
        help="input scaling with training-set statistics: " + listing(STANDARDIZE),
    )
    add(
        "--grad-accum",
        type=positive_int,
        default=1,
        help="micro-batches per step whose gradients are averaged",
    )
    add(
        "--early-stopping",
        type=positive_int,
        default=None,
        metavar="PATIENCE",
        shown="off",
        help="stop after PATIENCE epochs without a lower validation loss and "
        "keep the best epoch's params",
    )
    add(
        "--max-nonfinite",
        type=positive_int,
        default=5,
        help="stop after this many consecutive steps with a NaN/Inf loss or gradient",
    )
    add(
        "--checkpoint-dir",
        default=None,
        metavar="DIR",
        shown="no checkpoints",
        help="save the full training state after every epoch",
    )
    add(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue from the newest checkpoint in --checkpoint-dir",
    )
    add(
        "--no-progress",
        action="store_true",
        default=False,
        help="no progress bar within the epoch (the per-epoch lines stay)",
    )


def _check_applies(args) -> None:
    """Refuse flags that do not apply to the chosen optimizer, schedule, model or init."""
    check_shared(args)
    if args.decay_rate is not None and not SCHEDULES[args.schedule].uses_decay_rate:
        users = [n for n, s in SCHEDULES.items() if s.uses_decay_rate]
        raise UsageError(
            f"--decay-rate does not apply to --schedule {args.schedule} "
            f"(it applies to {', '.join(users)})"
        )
    if args.early_stopping is not None and args.val_fraction == 0:
        raise UsageError("--early-stopping needs validation data, got --val-fraction 0")


def build_optimizer(config: dict, steps_per_epoch: int, seed: int):
    """The optimizer of a resolved ``train`` config.

    Args:
      config: from :func:`resolve_config`.
      steps_per_epoch: optimization steps per epoch (for the schedules).
      seed: the run's seed (for ``noisy_sgd``).

    Returns:
      The ``GradientTransformation``.
    """
    jdl = library()
    total = max(1, config["epochs"] * steps_per_epoch)
    lr = SCHEDULES[config["schedule"]].build(
        config["lr"], total, steps_per_epoch, config["decay_rate"]
    )
    tx = optimizer_factory(config, seed)(lr)
    blocks = []
    if config["clip_norm"] is not None:
        blocks.append(jdl.clip_by_global_norm(config["clip_norm"]))
    if config["weight_decay_kind"] == "l2":
        blocks.append(jdl.add_l2(config["weight_decay"]))
    return jdl.chain(*blocks, tx) if blocks else tx


def _load(config: dict):
    """``(train, val or None, test)``; validation is a stratified part of the training data."""
    train, test = load_dataset(config)
    if not config["val_fraction"]:
        return train, None, test
    from sklearn.model_selection import train_test_split

    x_tr, x_val, y_tr, y_val = train_test_split(
        *train, test_size=config["val_fraction"], random_state=config["seed"], stratify=train[1]
    )
    return (x_tr, y_tr), (x_val, y_val), test


def _environment() -> dict:
    import flax
    import jax
    import optax

    device = jax.devices()[0]
    return {
        "versions": {
            "jaxopt_dl": library().__version__,
            "jax": jax.__version__,
            "optax": optax.__version__,
            "flax": flax.__version__,
        },
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
    check_out(args.out)
    config = resolve_config(args)

    import jax

    from jaxopt_dl import training

    jdl = library()
    (x, y), val, test = _load(config)
    steps_per_epoch = len(x) // args.batch_size
    if steps_per_epoch == 0:
        raise UsageError(f"--batch-size must be at most {len(x)}, got {args.batch_size}")
    if args.batch_size % args.grad_accum:
        raise UsageError(
            f"--batch-size must be a multiple of --grad-accum, got "
            f"{args.batch_size} and {args.grad_accum}"
        )
    tx = build_optimizer(config, steps_per_epoch, args.seed)
    state = training.create_train_state(build_model(config), tx, jax.random.key(args.seed), x[:1])
    callbacks = [
        training.ProgressLogger(bar=not args.no_progress),
        training.NonFiniteGuard(args.max_nonfinite),
    ]
    if args.early_stopping is not None:
        callbacks.append(training.EarlyStopping(args.early_stopping))
    if args.checkpoint_dir is not None:
        callbacks.append(training.ModelCheckpoint(args.checkpoint_dir, resume=args.resume))
    record = {**_environment(), "config": config}
    params_path = os.path.join(args.out, "params.msgpack")
    start = time.perf_counter()
    try:
        state, history = training.fit(
            state,
            (x, y),
            val,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            callbacks=callbacks,
            config=training.FitConfig(grad_accum_steps=args.grad_accum),
        )
    except training.NonFiniteError as error:
        jdl.initializers.save_params(error.state.params, params_path)
        _write(args.out, error.history, {**record, "error": str(error)})
        print(f"error: {error} Last finite params: {params_path}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    test_loss, test_accuracy = training.evaluate(state, test)
    jdl.initializers.save_params(state.params, params_path)
    metrics_path = _write(
        args.out,
        history,
        {
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "train_seconds": seconds,
            **record,
        },
    )
    print(
        f"Test - loss {test_loss:.4g} - acc {test_accuracy:.4g} "
        f"({len(history.epoch)} epochs in {seconds:.1f}s)"
    )
    print(f"wrote {metrics_path}, {os.path.join(args.out, 'curves.png')} and {params_path}")
    return 0


def _write(out: str, history, record: dict) -> str:
    from jaxopt_dl.training import plot_history

    metrics = {"test_loss": None, "test_accuracy": None, **record, "history": history.to_dict()}
    path = os.path.join(out, "metrics.json")
    with open(path, "w") as f:
        json.dump(metrics, f, indent=1)
    plot_history(history, os.path.join(out, "curves.png"))
    return path
