"""Run every experiment and write ``OUT/summary.md`` and ``OUT/summary.json``.

    python experiments/run_all.py [--quick] [--out DIR] [--only name,name,...]

Every ``experiments/<name>.py`` that does not start with ``_`` (and is not this file) is
an experiment (see ``_common.py`` for the contract). A script that raises is recorded as
``error`` with its exception and the others still run. The exit status is 1 when a
script crashed, 0 otherwise (a claim that does not reproduce is a result, not a crash).
"""

from __future__ import annotations

import glob
import importlib
import os
import sys
import time
import traceback
from types import ModuleType
from typing import Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _common  # noqa: E402
from tqdm import tqdm  # noqa: E402

REQUIRED = ("CLAIM", "TITLE", "SEEDS", "CRITERION", "run")


def experiment_names() -> list[str]:
    """Module names of all experiment scripts in this folder."""
    names = []
    for path in glob.glob(os.path.join(HERE, "*.py")):
        name = os.path.splitext(os.path.basename(path))[0]
        if not name.startswith("_") and name != "run_all":
            names.append(name)
    return sorted(names)


def load(name: str) -> ModuleType:
    """Import experiment ``name`` and check it defines the contract's names."""
    module = importlib.import_module(name)
    missing = [attr for attr in REQUIRED if not hasattr(module, attr)]
    if missing:
        raise ValueError(f"experiment {name!r} lacks {', '.join(missing)}")
    return module


def _failed(name: str, module: Optional[ModuleType], error: BaseException) -> _common.Result:
    text = "".join(traceback.format_exception_only(type(error), error)).strip()
    return _common.Result(
        name=name,
        claim=int(getattr(module, "CLAIM", -1)),
        title=getattr(module, "TITLE", name),
        seeds=tuple(getattr(module, "SEEDS", ())),
        criterion=getattr(module, "CRITERION", ""),
        measured={},
        reproduced=False,
        error=text,
    )


def run_one(name: str, out: str, quick: bool, smoke: bool = False) -> _common.Result:
    """Import and run one experiment; a crash becomes a ``Result`` with ``error`` set."""
    module = None
    start = time.perf_counter()
    try:
        module = load(name)
        res = module.run(out, quick=quick, smoke=smoke)
        if not isinstance(res, _common.Result):
            raise TypeError(f"run() of {name!r} returned {type(res).__name__}, not Result")
    except Exception as error:  # noqa: BLE001 - one broken script must not stop the others
        traceback.print_exc()
        res = _failed(name, module, error)
    res.seconds = time.perf_counter() - start
    return res


def _rel(path: Optional[str], out: str) -> str:
    return os.path.relpath(path, out) if path else "-"


def summary_markdown(results: Sequence[_common.Result], out: str, mode: str) -> str:
    """The summary page: one row per experiment, then each one's criterion."""
    reproduced = sum(r.status == "yes" for r in results)
    lines = [
        f"# Experiments: summary ({mode} run)",
        "",
        f"{reproduced} of {len(results)} reproduced; "
        f"{sum(r.status == 'error' for r in results)} crashed.",
        "",
        "| claim | experiment | seeds | measured | figure | reproduced | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        measured = "; ".join(f"{k} = {_common.fmt(v)}" for k, v in r.measured.items())
        if r.error:
            measured = f"**crashed:** `{r.error.splitlines()[-1]}`"
        figure = f"[png]({_rel(r.figure, out)}) / [table]({_rel(r.table, out)})"
        lines.append(
            f"| {r.claim} | {r.title} (`{r.name}`) | {', '.join(r.seeds)} | {measured} | "
            f"{figure} | {r.status} | {r.seconds or 0:.1f} |"
        )
    lines += ["", "## Criteria", ""]
    lines += [f"- **{r.claim} `{r.name}`**: {r.criterion}" for r in results]
    return "\n".join(lines) + "\n"


def run_experiments(
    names: Sequence[str], out: str, quick: bool, smoke: bool = False
) -> list[_common.Result]:
    """Run ``names`` in claim order with a progress bar; write the summaries to ``out``."""
    os.makedirs(out, exist_ok=True)
    results = []
    bar = tqdm(names, desc="experiments", unit="script")
    for name in bar:
        bar.set_postfix_str(name)
        results.append(run_one(name, out, quick, smoke))
    results.sort(key=lambda r: (r.claim, r.name))
    mode = "smoke" if smoke else "quick" if quick else "full"
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(summary_markdown(results, out, mode))
    _common.dump_json(results, os.path.join(out, "summary.json"))
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = _common.parser(__doc__.strip().splitlines()[0])
    p.add_argument("--only", default="", help="comma-separated experiment names")
    args = p.parse_args(argv)
    names = experiment_names()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            p.error(f"unknown experiment(s) {', '.join(unknown)}; known: {', '.join(names)}")
        names = wanted
    results = run_experiments(names, args.out, args.quick, args.smoke)
    for r in results:
        print(f"{r.claim:>3} {r.name:<32} {r.status:<6} {r.seconds:6.1f}s")
    print(f"wrote {os.path.join(args.out, 'summary.md')}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
