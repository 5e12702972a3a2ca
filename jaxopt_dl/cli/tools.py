"""The ``lr-find`` and ``diagnose`` commands: :func:`jaxopt_dl.lr_find` and
:func:`jaxopt_dl.diagnose` on the digits, with the models and optimizers of ``train``."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from jaxopt_dl.cli.registry import (
    add_model_flags,
    add_optimizer_flags,
    add_run_flags,
    adder,
    build_model,
    check_out,
    check_shared,
    counted,
    fraction,
    load_split,
    optimizer_factory,
    positive_int,
    resolve_config,
)


def add_lr_find_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``lr-find``; every help line ends with its default.

    Args:
      parser: the ``lr-find`` sub-parser.
    """
    from jaxopt_dl.lr_finder import RULES

    add = adder(parser)
    add_model_flags(add)
    add_optimizer_flags(add, lr_help=None)
    add("--min-lr", type=float, default=1e-5, help="smallest rate")
    add("--max-lr", type=float, default=1.0, help="largest rate")
    add("--num", type=positive_int, default=24, help="rates in the log-spaced grid")
    add("--steps", type=positive_int, default=100, help="training steps per rate")
    add(
        "--rule",
        choices=RULES,
        default="min_loss_div_10",
        help="how the rate is suggested: " + ", ".join(RULES),
    )
    add_run_flags(add, "runs/lr_find", "lr_find.json and lr_find.png")


def add_diagnose_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``diagnose``; every help line ends with its default.

    Args:
      parser: the ``diagnose`` sub-parser.
    """
    add = adder(parser)
    add_model_flags(add)
    add_optimizer_flags(add, "learning rate")
    add("--steps", type=positive_int, default=150, help="minibatch steps of the short training run")
    add(
        "--overfit-steps",
        type=positive_int,
        default=200,
        help="full-batch steps on the small batch",
    )
    add("--overfit-examples", type=positive_int, default=10, help="examples in the small batch")
    add(
        "--val-fraction",
        type=fraction,
        default=0.1,
        help="fraction of the training data held out (stratified, the split of train with "
        "the same --seed) for the held-out accuracy; 0: the checklist's own 20%%",
    )
    add_run_flags(add, "runs/diagnose", "report.md, diagnose.json and the figures")


def _prepare(args) -> tuple[dict, Any, tuple, Any]:
    """Check ``args`` (before JAX starts), then ``(config, model, train, val or None)``:
    the digits' training split as ``train`` divides it."""
    check_shared(args)
    check_out(args.out)
    config = resolve_config(args)
    if "val_fraction" not in config:
        config["val_fraction"] = 0
    train, val, _ = load_split(config)
    return config, build_model(config), train, val


def run_lr_find(args) -> int:
    """The ``lr-find`` command: writes ``lr_find.json`` and ``lr_find.png``, prints the rate.

    Args:
      args: the parsed arguments.

    Returns:
      The exit status (0).
    """
    from jaxopt_dl.lr_finder import lr_find, plot_lr_find

    config, model, train, _ = _prepare(args)
    result = lr_find(
        model,
        train,
        optimizer_factory(config, args.seed),
        min_lr=args.min_lr,
        max_lr=args.max_lr,
        num=args.num,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        rule=args.rule,
    )
    report = {**result.to_dict(), "config": config}
    json_path = os.path.join(args.out, "lr_find.json")
    with open(json_path, "w") as f:
        json.dump(report, f, indent=1)
    plot_path = os.path.join(args.out, "lr_find.png")
    plot_lr_find(result, plot_path)
    print(
        f"suggested learning rate {result.suggestion:.3g} ({report['rule_description']}); "
        f"steepest descent at {result.suggestions['steepest']:.3g}; "
        f"{counted(args.num, 'rate')} x {counted(args.steps, 'step')} in {result.seconds:.1f} s"
    )
    print(f"wrote {json_path} and {plot_path}")
    return 0


def run_diagnose(args) -> int:
    """The ``diagnose`` command: the checklist on the digits training split, with its report.

    Args:
      args: the parsed arguments.

    Returns:
      The exit status: 0 when every item passes, 1 when any warns (for CI).
    """
    from jaxopt_dl.checklist import diagnose

    config, model, train, val = _prepare(args)
    report = diagnose(
        model,
        train,
        optimizer_factory(config, args.seed)(args.lr),
        val_data=val,
        overfit_examples=args.overfit_examples,
        overfit_steps=args.overfit_steps,
        train_steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        out=args.out,
    )
    for item in report.items:
        print(f"{item.status.upper():4}  {item.title}: {item.measured}")
    verdict = "every item passes" if report.ok else f"warnings: {', '.join(report.warnings)}"
    print(f"{verdict}; wrote {os.path.join(args.out, 'report.md')}")
    return 0 if report.ok else 1
