"""The command line: ``python -m jaxopt_dl <command> ...``.

``train`` trains a model on the digits with any optimizer of the library. It prints one
line per epoch (and a progress bar within the epoch on a terminal), holds out
``--val-fraction`` of the training data for validation, reports the test set once at
the end, and writes ``OUT/metrics.json`` (``test_loss``, ``test_accuracy``, the
history, the resolved configuration, package versions and the device),
``OUT/curves.png`` and ``OUT/params.msgpack``. ``lr-find`` runs the learning-rate range
test of :func:`jaxopt_dl.lr_find` and ``diagnose`` the debugging checklist of
:func:`jaxopt_dl.diagnose`, on the same models and optimizers. Bad invocations exit
with status 2 and one line, before JAX starts where the flags alone show it; an
interrupted command (Ctrl-C) with status 130 and one line. ``train --checkpoint-dir DIR``
records the run's settings with every checkpoint: the same command again resumes (and
says so), a changed setting is refused unless ``--allow-changed-settings``.

Commands live in :data:`COMMANDS` (name -> :class:`Command`); optimizers, schedules,
models and initializers in one registry each, shared by every command, from which the
argument choices, the help text and the checks that a flag applies are derived.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NamedTuple, Optional, Sequence

from jaxopt_dl.cli.registry import PROG
from jaxopt_dl.cli.tools import (
    add_diagnose_arguments,
    add_lr_find_arguments,
    run_diagnose,
    run_lr_find,
)
from jaxopt_dl.cli.train import add_train_arguments, run_train


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (``prog: error: ...``) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


class _Version(argparse.Action):
    """``--version``: print the package's version and exit 0."""

    def __call__(self, parser, namespace, values, option_string=None):
        from jaxopt_dl import __version__

        print(f"jaxopt_dl {__version__}")
        parser.exit(0)


class Command(NamedTuple):
    """A subcommand: adding one is one entry in :data:`COMMANDS`.

    Attributes:
      summary: one line for ``--help``.
      add_arguments: ``add_arguments(parser)`` declares its flags.
      run: ``run(args) -> exit status``; a ``ValueError`` becomes one line and status
        2, an interrupt (Ctrl-C) one line and status 130.
    """

    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS = {
    "train": Command(
        "train a classifier on the digits and write metrics, curves and params",
        add_train_arguments,
        run_train,
    ),
    "lr-find": Command(
        "learning-rate range test: one vmapped run per rate on a log grid, "
        "plot, suggested rate and JSON",
        add_lr_find_arguments,
        run_lr_find,
    ),
    "diagnose": Command(
        "the lectures' debugging checklist, automated: a Markdown report with "
        "pass/warn per item and figures",
        add_diagnose_arguments,
        run_diagnose,
    ),
}

DESCRIPTION = (
    "jaxopt_dl command line. Run 'python -m jaxopt_dl COMMAND --help' for the flags of a command."
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command in :data:`COMMANDS`.

    Returns:
      The ``argparse`` parser.
    """
    parser = _OneLineParser(prog=PROG, description=DESCRIPTION)
    parser.add_argument(
        "--version",
        action=_Version,
        nargs=0,
        default=argparse.SUPPRESS,
        help="print the version of jaxopt_dl and exit",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_OneLineParser, metavar="COMMAND"
    )
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
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
