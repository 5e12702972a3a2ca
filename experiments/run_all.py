"""Run every experiment and write ``OUT/summary.md`` and ``OUT/summary.json``.

    python experiments/run_all.py [--quick | --full] [--out DIR] [--only name,name,...]

Every ``experiments/<name>.py`` that does not start with ``_`` (and is not this file) is
an experiment (see ``_common.py`` for the contract). A script that raises is recorded as
``error`` with its exception and the others still run. The exit status is 1 when a
script crashed, 0 otherwise (a claim that does not reproduce is a result, not a crash).

``summary.json`` holds one record per experiment: claim id, lecture, criterion (from
``criteria.json``), number of seeds, measured values with 95% intervals, verdict, the
commit of the criteria it was judged by, the run's mode and the criteria's history
(older criteria with their verdicts). With ``--only`` the named records replace their
earlier ones in an existing ``summary.json`` and the others are kept.
"""

from __future__ import annotations

import datetime
import glob
import importlib
import json
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
        if not name.startswith("_") and name not in ("run_all", "render_docs"):
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
        verdict="inconclusive",
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


def claim_id(claim: int) -> Optional[str]:
    """``"c06"`` for claim 6; ``None`` for a gallery without a claim (claim 0)."""
    return f"c{claim:02d}" if claim > 0 else None


def record(res: _common.Result, out: str, mode: str, commit: dict) -> dict:
    """The ``summary.json`` record of one result (criteria entry merged in)."""
    rec = res.to_dict()
    rec["figure"] = _rel(res.figure, out)
    rec["table"] = _rel(res.table, out)
    rec["mode"] = mode
    rec["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cid = claim_id(res.claim)
    rec["id"] = cid
    if cid is not None:
        entry = _common.criteria(cid)
        redone = entry["redone"] and res.criterion == entry["criterion"]
        rec.update(
            lecture=entry["lecture"],
            quote=entry["quote"] if redone else "",
            claim_text=entry["claim"] if redone else "",
            n_seeds=entry["seeds"] if redone else None,
            redone=redone,
            history=entry["history"] if redone else [],
            criteria_commit=commit["commit"],
            criteria_uncommitted=commit["uncommitted_changes"],
        )
    return rec


def counts(records: Sequence[dict]) -> dict[str, int]:
    """How many of the claims (gallery excluded) have each verdict, plus errors."""
    claims = [r for r in records if r.get("id")]
    out = {v: sum(r["status"] == v for r in claims) for v in _common.VERDICTS}
    out["error"] = sum(r["status"] == "error" for r in claims)
    out["claims"] = len(claims)
    return out


def summary_markdown(records: Sequence[dict]) -> str:
    """The summary page: counts, one row per experiment, then criteria and history."""
    n = counts(records)
    modes = sorted({r["mode"] for r in records})
    commits = sorted({str(r.get("criteria_commit"))[:10] for r in records if r.get("id")})
    lines = [
        f"# Experiments: summary ({' + '.join(modes)} run)",
        "",
        f"Of {n['claims']} claims: {n['reproduced']} reproduced, {n['not reproduced']} not "
        f"reproduced, {n['inconclusive']} inconclusive, {n['error']} crashed. "
        f"Criteria commit: {', '.join(commits)}.",
        "",
        "| claim | experiment | lecture | seeds | measured (mean [95% CI]) | verdict | "
        "earlier verdicts | figure | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        measured = "; ".join(f"{k} = {_fmt_json(v)}" for k, v in r["measured"].items())
        if r.get("error"):
            measured = f"**crashed:** `{r['error'].splitlines()[-1]}`"
        lecture = f"{r['lecture']['author']}, *{r['lecture']['title']}*" if r.get("id") else "-"
        history = "; ".join(f"{h['verdict']}, {h['run']}" for h in r.get("history", [])) or "-"
        lines.append(
            f"| {r.get('id') or '-'} | {r['title']} (`{r['name']}`) | {lecture} | "
            f"{r.get('n_seeds') or '-'} | {measured} | **{r['status']}** | {history} | "
            f"[png]({r['figure']}) / [table]({r['table']}) | {r['seconds'] or 0:.1f} |"
        )
    lines += ["", "## Criteria", ""]
    for r in records:
        lines.append(f"- **{r.get('id') or r['name']}** ({r['mode']} run): {r['criterion']}")
        for h in r.get("history", []):
            lines.append(f"  - earlier criterion, {h['verdict']} ({h['run']}): {h['criterion']}")
    return "\n".join(lines) + "\n"


def _fmt_json(value) -> str:
    if isinstance(value, dict) and "mean" in value:
        lo, hi = value["ci95"]
        if value["n"] == 1 or lo == hi:
            return _common.fmt(value["mean"])
        return f"{_common.fmt(value['mean'])} [{_common.fmt(lo)}, {_common.fmt(hi)}]"
    return _common.fmt(value)


def run_experiments(
    names: Sequence[str], out: str, quick: bool, smoke: bool = False, merge: bool = False
) -> list[_common.Result]:
    """Run ``names`` in claim order with a progress bar; write the summaries to ``out``.

    Args:
      names: experiment module names.
      out: output folder.
      quick: the quick sizes.
      smoke: the tiny sizes (tests).
      merge: keep the records of other experiments already in ``out/summary.json``.
    """
    os.makedirs(out, exist_ok=True)
    results = []
    bar = tqdm(names, desc="experiments", unit="script")
    for name in bar:
        bar.set_postfix_str(name)
        results.append(run_one(name, out, quick, smoke))
    results.sort(key=lambda r: (r.claim, r.name))
    mode = "smoke" if smoke else "quick" if quick else "full"
    commit = _common.criteria_commit()
    records = {r.name: record(r, out, mode, commit) for r in results}
    path = os.path.join(out, "summary.json")
    if merge and os.path.exists(path):
        with open(path) as f:
            earlier = json.load(f)["experiments"]
        records = {**{r["name"]: r for r in earlier}, **records}
    ordered = sorted(records.values(), key=lambda r: (r["claim"], r["name"]))
    with open(path, "w") as f:
        json.dump(
            {"counts": counts(ordered), "experiments": ordered}, f, indent=1, ensure_ascii=False
        )
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(summary_markdown(ordered))
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
    results = run_experiments(names, args.out, args.quick, args.smoke, merge=bool(args.only))
    for r in results:
        print(f"{r.claim:>3} {r.name:<32} {r.status:<6} {r.seconds:6.1f}s")
    print(f"wrote {os.path.join(args.out, 'summary.md')}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
