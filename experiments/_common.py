"""Shared layer of the experiment scripts: the result record, figure/table writers, the CLI.

Every experiment is one module ``experiments/<name>.py`` that defines

* the constants ``CLAIM`` (the issue's claim number, ``0`` for a gallery with no claim),
  ``TITLE`` (one line), ``SEEDS`` (the lecture seeds, e.g. ``("000", "002")``) and
  ``CRITERION`` (what "reproduced" means, fixed before the run — never tuned after it);
* ``run(out_dir, quick=False, smoke=False) -> Result``, which writes
  ``out_dir/<name>.png`` (:func:`save_figure`) and ``out_dir/<name>.md``
  (:func:`write_table`) and nothing else;
* ``if __name__ == "__main__": raise SystemExit(main(run, __doc__))``.

Sizes: ``full`` is the default, ``quick`` (``--quick``) must finish in about a minute on 2
CPU cores, ``smoke`` (tests only) in a few seconds; pick sizes with :func:`pick`.

Scripts import this module as ``import _common`` (their own folder is on ``sys.path``
when run as ``python experiments/<name>.py``; ``run_all`` and the tests put it there).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from typing import Any, Callable, Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DEFAULT_OUT = os.path.join("experiments", "results")

Number = float | int


@dataclasses.dataclass
class Result:
    """What one experiment measured and whether the lecture's claim reproduced.

    Attributes:
      name: the script's module name (``"lr_noisy_quadratic"``); also the stem of its
        figure and table.
      claim: claim number in issue 7 (``0``: a gallery without a claim).
      title: one-line statement of the claim.
      seeds: lecture seeds the claim comes from.
      criterion: the test for "reproduced", as stated before the run.
      measured: the numbers the criterion reads (name -> number or short text).
      reproduced: whether the criterion held (``False`` also when the script failed).
      figure: path of the PNG, or ``None`` when the script failed before writing it.
      table: path of the Markdown table, or ``None``.
      error: the exception text when the script crashed (set by ``run_all``).
      seconds: wall time of the run (set by ``run_all``).
    """

    name: str
    claim: int
    title: str
    seeds: tuple[str, ...]
    criterion: str
    measured: dict[str, Any]
    reproduced: bool
    figure: Optional[str] = None
    table: Optional[str] = None
    error: Optional[str] = None
    seconds: Optional[float] = None

    @property
    def status(self) -> str:
        """``"yes"``, ``"no"`` or ``"error"``."""
        if self.error is not None:
            return "error"
        return "yes" if self.reproduced else "no"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN and inf become strings)."""
        record = dataclasses.asdict(self)
        record["seeds"] = list(self.seeds)
        record["measured"] = {k: _jsonable(v) for k, v in self.measured.items()}
        record["status"] = self.status
        return record


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isfinite(number):
        return int(number) if isinstance(value, int) else number
    return str(number)


def result(
    module_globals: Mapping[str, Any],
    measured: Mapping[str, Any],
    reproduced: bool,
    figure: str,
    table: str,
) -> Result:
    """Build a :class:`Result` from a script's constants (pass ``globals()``)."""
    name = module_globals["__name__"].rsplit(".", 1)[-1]
    if name == "__main__":
        name = os.path.splitext(os.path.basename(module_globals["__file__"]))[0]
    return Result(
        name=name,
        claim=int(module_globals["CLAIM"]),
        title=module_globals["TITLE"],
        seeds=tuple(module_globals["SEEDS"]),
        criterion=module_globals["CRITERION"],
        measured=dict(measured),
        reproduced=bool(reproduced),
        figure=figure,
        table=table,
    )


def pick(quick: bool, smoke: bool, full: Any, fast: Any, tiny: Any) -> Any:
    """The size for the mode: ``tiny`` when ``smoke``, ``fast`` when ``quick``, else ``full``."""
    if smoke:
        return tiny
    return fast if quick else full


def fmt(value: Any) -> str:
    """A number in 4 significant digits (text and booleans unchanged)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) or hasattr(value, "dtype"):
        number = float(value)
        if number.is_integer() and abs(number) < 1e9:
            return str(int(number))
        return f"{number:.4g}"
    return str(value)


def save_figure(fig: "plt.Figure", out: str, name: str, dpi: int = 110) -> str:
    """Check and write ``fig`` as ``out/name.png``, then close it.

    Every visible axes must carry an x label, a y label and a title (its own or the
    figure's suptitle), and the figure needs at least one legend — so that every
    figure in the gallery can be read without the script.

    Returns:
      The path written.

    Raises:
      ValueError: naming the first axes that lacks a label, title or legend.
    """
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    visible = [ax for ax in fig.axes if ax.axison and ax.get_label() != "<colorbar>"]
    for i, ax in enumerate(visible):
        twin = any(other is not ax and other.bbox.bounds == ax.bbox.bounds for other in visible)
        if not ax.get_xlabel() and not twin:
            raise ValueError(f"figure {name!r}: axes {i} has no x label")
        if not ax.get_ylabel():
            raise ValueError(f"figure {name!r}: axes {i} has no y label")
        if not (ax.get_title() or suptitle):
            raise ValueError(f"figure {name!r}: axes {i} has no title and no suptitle")
    if not any(ax.get_legend() is not None for ax in fig.axes) and not fig.legends:
        raise ValueError(f"figure {name!r} has no legend")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}.png")
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Markdown lines of a table whose columns are the keys of the first row."""
    if not rows:
        raise ValueError("rows must hold at least one row, got rows=[]")
    columns = list(rows[0])

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(cell(fmt(row.get(c, ""))) for c in columns) + " |")
    return lines


def write_table(
    rows: Sequence[Mapping[str, Any]],
    out: str,
    name: str,
    title: str,
    notes: Sequence[str] = (),
    extra_tables: Optional[Mapping[str, Sequence[Mapping[str, Any]]]] = None,
) -> str:
    """Write ``out/name.md``: a heading, ``notes`` lines, the table, then extra tables.

    Args:
      rows: the main table, one mapping per row (columns = keys of the first row).
      out: output folder.
      name: file stem.
      title: the heading.
      notes: paragraphs written before the table (criterion, setup, verdict).
      extra_tables: more tables, each under a ``### <key>`` sub-heading.

    Returns:
      The path written.
    """
    lines = [f"# {title}", ""]
    for note in notes:
        lines += [note, ""]
    lines += markdown_table(rows)
    for heading, table in (extra_tables or {}).items():
        lines += ["", f"### {heading}", ""] + markdown_table(table)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def verdict_notes(module_globals: Mapping[str, Any], reproduced: bool, setup: str) -> list[str]:
    """The standard preamble of a table: claim, seeds, setup, criterion and verdict."""
    seeds = ", ".join(module_globals["SEEDS"])
    return [
        f"**Claim {module_globals['CLAIM']}** (seeds {seeds}): {module_globals['TITLE']}",
        f"**Setup:** {setup}",
        f"**Criterion:** {module_globals['CRITERION']}",
        f"**Reproduced:** {'yes' if reproduced else 'NO'}",
    ]


def parser(description: str) -> argparse.ArgumentParser:
    """The standard command line: ``--quick``, ``--smoke`` and ``--out DIR``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="smaller run (about a minute)")
    p.add_argument("--smoke", action="store_true", help="tiny run (seconds; for tests)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    return p


def main(
    run: Callable[..., Result], doc: Optional[str], argv: Optional[Sequence[str]] = None
) -> int:
    """Run one experiment from the command line and print its verdict; exit status 0."""
    args = parser((doc or "").strip().splitlines()[0] if doc else "").parse_args(argv)
    res = run(args.out, quick=args.quick, smoke=args.smoke)
    print(f"claim {res.claim} [{res.name}]: reproduced={res.status}")
    for key, value in res.measured.items():
        print(f"  {key} = {fmt(value)}")
    print(f"wrote {res.figure} and {res.table}")
    return 0


def dump_json(results: Sequence[Result], path: str) -> None:
    """Write the results as a JSON list."""
    with open(path, "w") as f:
        json.dump([r.to_dict() for r in results], f, indent=2)


def toy_trajectories(
    make_opt: Callable[[Any], Any],
    learning_rates: Any,
    grad_fn: Callable[[Any, Any], Any],
    w0: Any,
    steps: int,
    keys: Any,
) -> Any:
    """Iterates of ``make_opt(lr)`` from ``w0`` for every learning rate and noise key.

    One compiled program: ``lax.scan`` over steps, ``vmap`` over keys and learning rates.

    Args:
      make_opt: ``lr -> GradientTransformation`` (``lr`` arrives traced).
      learning_rates: ``(n_lr,)`` array.
      grad_fn: ``(w, key) -> gradient`` (ignore ``key`` for exact gradients).
      w0: ``(dim,)`` start.
      steps: number of updates.
      keys: ``(n_key,)`` PRNG keys; step ``t`` uses ``split(key, steps)[t]``.

    Returns:
      ``(n_lr, n_key, steps + 1, dim)`` iterates, the start included.
    """
    import jax
    import jax.numpy as jnp

    import jaxopt_dl as jdl

    w0 = jnp.asarray(w0, jnp.float32)

    def one(lr, key):
        opt = make_opt(lr)

        def step(carry, k):
            w, state = carry
            updates, state = opt.update(grad_fn(w, k), state, w)
            w = jdl.apply_updates(w, updates)
            return (w, state), w

        _, ws = jax.lax.scan(step, (w0, opt.init(w0)), jax.random.split(key, steps))
        return jnp.concatenate([w0[None], ws])

    run = jax.jit(jax.vmap(jax.vmap(one, (None, 0)), (0, None)))
    return run(jnp.asarray(learning_rates, jnp.float32), keys)
