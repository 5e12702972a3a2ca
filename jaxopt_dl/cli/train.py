"""The ``train`` command: a model on the digits with any optimizer of the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from jaxopt_dl.cli.registry import (
    DATASETS,
    FLAG_OF_ARGUMENT,
    OPTIMIZERS,
    SCHEDULE_KNOBS,
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
    counted,
    flag_error,
    fraction,
    library,
    listing,
    load_split,
    non_negative_int,
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
    knob_help = {
        "decay_rate": ("factor of the decays", float),
        "pct_start": ("share of the run spent rising", fraction),
        "div_factor": ("--lr / the starting rate", float),
        "final_div_factor": ("the starting rate / the final rate", float),
        "plateau_patience": ("epochs without improvement tolerated", non_negative_int),
    }
    for knob, default in SCHEDULE_KNOBS.items():
        text, kind = knob_help[knob]
        add(
            f"--{knob.replace('_', '-')}",
            type=kind,
            default=None,
            shown=default,
            help=f"{text}, for --schedule " + ", ".join(_knob_users(knob)),
        )
    add(
        "--warmup-steps",
        type=non_negative_int,
        default=None,
        shown="5%% of the steps for warmup_cosine, else 0",
        help="steps of a linear warmup from 0 to the schedule's first rate, after which "
        "the schedule starts (every schedule but onecycle, which rises by itself)",
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
        help="save the full training state and the run's settings after every epoch; "
        "the same command again continues from the newest checkpoint there",
    )
    add(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=None,
        shown="on with --checkpoint-dir",
        help="continue from the newest checkpoint in --checkpoint-dir; --no-resume "
        "deletes its checkpoints and starts over",
    )
    add(
        "--allow-changed-settings",
        action="store_true",
        default=False,
        help="resume from a checkpoint written with other settings (optimizer, its "
        "hyperparameters, schedule, model, batch size, data, seed); metrics.json records "
        "both; without it such a resume is refused",
    )
    add(
        "--no-progress",
        action="store_true",
        default=False,
        help="no progress bar within the epoch (the per-epoch lines stay)",
    )


def _knob_users(knob: str) -> list[str]:
    return [name for name, schedule in SCHEDULES.items() if knob in schedule.knobs]


def _check_applies(args) -> None:
    """Refuse flags that do not apply to the chosen optimizer, schedule, model or init."""
    check_shared(args)
    for knob in SCHEDULE_KNOBS:
        if getattr(args, knob) is not None and knob not in SCHEDULES[args.schedule].knobs:
            raise UsageError(
                f"--{knob.replace('_', '-')} does not apply to --schedule {args.schedule} "
                f"(it applies to {', '.join(_knob_users(knob))})"
            )
    if args.warmup_steps is not None and args.schedule == "onecycle":
        raise UsageError(
            "--warmup-steps does not apply to --schedule onecycle (it rises over --pct-start "
            "of the run by itself)"
        )
    if args.early_stopping is not None and args.val_fraction == 0:
        raise UsageError("--early-stopping needs validation data, got --val-fraction 0")
    if args.checkpoint_dir is None:
        if args.resume is not None:
            flag = "--resume" if args.resume else "--no-resume"
            raise UsageError(f"{flag} needs --checkpoint-dir DIR")
        if args.allow_changed_settings:
            raise UsageError("--allow-changed-settings needs --checkpoint-dir DIR")


def build_optimizer(config: dict, steps_per_epoch: int, seed: int) -> tuple:
    """The optimizer of a resolved ``train`` config.

    Args:
      config: from :func:`resolve_config`.
      steps_per_epoch: optimization steps per epoch (for the schedules).
      seed: the run's seed (for ``noisy_sgd``).

    Returns:
      ``(GradientTransformation, plateau)``: ``plateau`` is the ``reduce_on_plateau``
      transform within it for ``--schedule plateau`` (to be fed an epoch metric), else
      None.

    Raises:
      UsageError: a hyperparameter out of range, named by its flag.
    """
    jdl = library()
    total = max(1, config["epochs"] * steps_per_epoch)
    warmup = config["warmup_steps"]
    if warmup is None:
        warmup = max(1, total // 20) if config["schedule"] == "warmup_cosine" else 0
    try:
        lr = SCHEDULES[config["schedule"]].build(config, max(1, total - warmup), steps_per_epoch)
        if warmup:
            start = lr(0) if callable(lr) else lr
            after = lr if callable(lr) else jdl.constant_schedule(lr)
            lr = jdl.join_schedules([jdl.linear_schedule(0.0, start, warmup), after], [warmup])
        plateau = None
        if config["schedule"] == "plateau":
            plateau = jdl.reduce_on_plateau(
                factor=config["decay_rate"], patience=config["plateau_patience"]
            )
        blocks = []
        if config["clip_norm"] is not None:
            blocks.append(jdl.clip_by_global_norm(config["clip_norm"]))
        if config["weight_decay_kind"] == "l2":
            blocks.append(jdl.add_l2(config["weight_decay"]))
    except (TypeError, ValueError) as error:
        raise flag_error(error, config["optimizer"]) from None
    tx = optimizer_factory(config, seed)(lr)
    tx = jdl.chain(*blocks, tx) if blocks else tx
    return (tx if plateau is None else jdl.chain(tx, plateau)), plateau


_NOT_SETTINGS = (
    "epochs",
    "out",
    "checkpoint_dir",
    "resume",
    "allow_changed_settings",
    "no_progress",
    "weight_decay_kind",
    "optimizer_arguments",
)


def run_settings(config: dict) -> dict:
    """``{flag: value}`` of everything that shapes a run's result, for its checkpoints.

    What may change between a run and its resume is left out: ``--epochs`` (to train
    longer), ``--out``, ``--checkpoint-dir`` and the display flags.

    Args:
      config: from :func:`resolve_config`.

    Returns:
      The settings, the optimizer's arguments under their flags.
    """
    settings = {f"--{k.replace('_', '-')}": v for k, v in config.items() if k not in _NOT_SETTINGS}
    flags = {arg: flag for flag, arg in OPTIMIZERS[config["optimizer"]].flags.items()}
    for argument, value in config["optimizer_arguments"].items():
        if argument in flags:
            settings[f"--{flags[argument].replace('_', '-')}"] = value
        else:
            settings[FLAG_OF_ARGUMENT.get(argument, argument)] = value
    return settings


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


class _EpochWatch:
    """Which epoch runs (for the interrupt line); a note when a resume stretches a schedule."""

    def __init__(self, training, saver, config: dict):
        self.epoch = None
        self.saver, self.config = saver, config
        self.callback = training.LambdaCallback(on_epoch_begin=self._begin)

    def _begin(self, epoch: int, trainer) -> None:
        if self.epoch is None:
            self._schedule_note(trainer.epochs)
        self.epoch = epoch

    def _schedule_note(self, epochs: int) -> None:
        resumed = self.saver.resumed if self.saver is not None else None
        name = self.config["schedule"]
        if resumed and resumed["epochs"] not in (None, epochs) and SCHEDULES[name].spans_run:
            print(
                f"--schedule {name} now spans {counted(epochs, 'epoch')}, not "
                f"{resumed['epochs']}: its rate differs from here on",
                flush=True,
            )


def _interrupted(watch: _EpochWatch, args) -> str:
    """The one line of an interrupted run: where it stopped and how to resume."""
    from jaxopt_dl import checkpoint

    where = "before the first epoch" if watch.epoch is None else f"at epoch {watch.epoch + 1}"
    if args.checkpoint_dir is None:
        return f"interrupted {where}; nothing saved (--checkpoint-dir DIR makes a run resumable)"
    step = checkpoint.latest_step(args.checkpoint_dir)
    if step is None:
        return f"interrupted {where}, before the first checkpoint; the same command starts over"
    path = os.path.join(args.checkpoint_dir, f"step_{step}")
    return f"interrupted {where}; run the same command to resume from {path}"


def run_train(args) -> int:
    """The ``train`` command.

    Args:
      args: the parsed arguments.

    Returns:
      The exit status: 0; 1 after a non-finite loss; 130 when interrupted (Ctrl-C).
    """
    _check_applies(args)
    check_out(args.out)
    config = resolve_config(args)

    import jax

    from jaxopt_dl import checkpoint, training

    jdl = library()
    (x, y), val, test = load_split(config)
    steps_per_epoch = len(x) // args.batch_size
    if steps_per_epoch == 0:
        raise UsageError(f"--batch-size must be at most {len(x)}, got {args.batch_size}")
    if args.batch_size % args.grad_accum:
        raise UsageError(
            f"--batch-size must be a multiple of --grad-accum, got "
            f"{args.batch_size} and {args.grad_accum}"
        )
    tx, plateau = build_optimizer(config, steps_per_epoch, args.seed)
    state = training.create_train_state(build_model(config), tx, jax.random.key(args.seed), x[:1])
    saver = None
    if args.checkpoint_dir is not None:
        saver = training.ModelCheckpoint(
            args.checkpoint_dir,
            resume=args.resume is not False,
            overwrite=args.resume is False,
            settings=run_settings(config),
            allow_changed_settings=args.allow_changed_settings,
        )
    watch = _EpochWatch(training, saver, config)
    callbacks = [
        training.ProgressLogger(bar=not args.no_progress),
        training.NonFiniteGuard(args.max_nonfinite),
        watch.callback,
    ]
    if plateau is not None:
        monitor = "loss" if val is None else "val_loss"
        callbacks.append(training.PlateauFeeder(plateau, monitor=monitor))
    if args.early_stopping is not None:
        callbacks.append(training.EarlyStopping(args.early_stopping))
    if saver is not None:
        callbacks.append(saver)
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
    except checkpoint.SettingsChangedError as error:
        raise UsageError(
            f"--checkpoint-dir {args.checkpoint_dir} holds a run with other settings: "
            f"{checkpoint.describe_changes(error.changes)}; pass --allow-changed-settings to "
            "continue it with the new ones, or --no-resume to start over"
        ) from None
    except KeyboardInterrupt:
        print(_interrupted(watch, args), file=sys.stderr, flush=True)
        return 130
    except training.NonFiniteError as error:
        jdl.initializers.save_params(error.state.params, params_path)
        _write(args.out, error.history, {**record, "error": str(error)})
        print(f"error: {error} Last finite params: {params_path}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    if saver is not None and saver.resumed is not None:
        record["resume"] = saver.resumed
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
    trained = len(history.epoch) - (saver.resumed["epoch"] if saver and saver.resumed else 0)
    done = counted(len(history.epoch), "epoch")
    if trained != len(history.epoch):
        done += f", {trained} of them in this run,"
    print(f"Test - loss {test_loss:.4g} - acc {test_accuracy:.4g} ({done} in {seconds:.1f}s)")
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
