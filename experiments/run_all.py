"""Run every experiment and write ``OUT/summary.md`` and ``OUT/summary.json``.

    python experiments/run_all.py [--quick | --full] [--out DIR] [--only name,name,...]

Every ``experiments/<name>.py`` that does not start with ``_`` (and is not this file) is
an experiment (see ``_common.py`` for the contract). A script that raises is recorded as
``error`` with its exception and the others still run. The exit status is 1 when a
script crashed, 0 otherwise (a claim that does not reproduce is a result, not a crash).

``summary.json`` holds one record per experiment: claim id, lecture, criterion (from
``criteria.json``), number of seeds, measured values with 95% intervals, verdict, the
commit of the criteria it was judged by, the run's mode (only a ``full`` run is binding),
whether it is a claim or a sanity check (with the claims' own sanity sub-checks), and the
criteria's history (older criteria with their verdicts). ``summary.md`` shows the sanity
checks and the claims in separate tables and counts only the claims. With ``--only`` the
named records replace their earlier ones in an existing ``summary.json`` and the others
are kept.
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
    """Import and run one experiment and stamp its figure and table with the run's mode.

    A crash becomes a ``Result`` with ``error`` set.
    """
    module = None
    start = time.perf_counter()
    try:
        module = load(name)
        res = module.run(out, quick=quick, smoke=smoke)
        if not isinstance(res, _common.Result):
            raise TypeError(f"run() of {name!r} returned {type(res).__name__}, not Result")
        _common.stamp(res, _mode(quick, smoke))
    except Exception as error:  # noqa: BLE001 - one broken script must not stop the others
        traceback.print_exc()
        res = _failed(name, module, error)
    res.seconds = time.perf_counter() - start
    return res


def _mode(quick: bool, smoke: bool) -> str:
    return "smoke" if smoke else "quick" if quick else "full"


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
    rec["binding"] = mode == "full"
    rec["kind"] = _common.kind(res.claim) if res.claim >= 0 else "claim"
    rec["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cid = claim_id(res.claim)
    rec["id"] = cid
    if cid is not None:
        entry = _common.criteria(cid)
        rec.update(
            lecture=entry["lecture"],
            quote=entry["quote"],
            claim_text=entry["claim"],
            n_seeds=entry["seeds"],
            history=entry["history"],
            criteria_commit=commit["commit"],
            criteria_uncommitted=commit["uncommitted_changes"],
        )
    return rec


def record_kind(rec: dict) -> str:
    """A record's kind (``"claim"``, ``"sanity"`` or ``"gallery"``), from criteria.json if unset."""
    return rec.get("kind") or _common.kind(int(rec["claim"]))


def sanity_checks(records: Sequence[dict]) -> list[dict]:
    """Every sanity check in the records: whole sanity scripts and the claims' sub-checks.

    Returns:
      ``[{"id", "check", "name", "status"}]``; ``status`` is ``"holds"``, ``"fails"``,
      ``"inconclusive"`` or ``"error"``.
    """
    rows = []
    for r in records:
        if not r.get("id"):
            continue
        if record_kind(r) == "sanity":
            status = "error" if r["status"] == "error" else _common.SANITY_WORDS[r["status"]]
            rows.append({"id": r["id"], "check": r["title"], "name": r["name"], "status": status})
        for label, verdict in r.get("sanity", {}).items():
            rows.append(
                {
                    "id": f"{r['id']} {label.split(' ', 1)[0]}",
                    "check": label.split(" ", 1)[-1],
                    "name": r["name"],
                    "status": _common.SANITY_WORDS[verdict],
                }
            )
    return rows


def counts(records: Sequence[dict]) -> dict[str, int]:
    """How many claims (sanity checks and the gallery excluded) have each verdict.

    Also ``errors`` among them, ``claims`` (their number) and ``sanity`` /
    ``sanity_holds`` (the sanity checks and how many hold).
    """
    claims = [r for r in records if r.get("id") and record_kind(r) == "claim"]
    out = {v: sum(r["status"] == v for r in claims) for v in _common.VERDICTS}
    out["error"] = sum(r["status"] == "error" for r in claims)
    out["claims"] = len(claims)
    checks = sanity_checks(records)
    out["sanity"] = len(checks)
    out["sanity_holds"] = sum(c["status"] == "holds" for c in checks)
    return out


def summary_markdown(records: Sequence[dict]) -> str:
    """The summary page: counts, the sanity checks, one row per claim, then the criteria."""
    n = counts(records)
    modes = sorted({r["mode"] for r in records})
    binding = all(r["mode"] == "full" for r in records)
    lines = [
        f"# Experiments: summary ({' + '.join(_common.mode_label(m) for m in modes)})",
        "",
        f"Of {n['claims']} claims: {n['reproduced']} reproduced, {n['not reproduced']} not "
        f"reproduced, {n['inconclusive']} inconclusive, {n['error']} crashed. Of "
        f"{n['sanity']} sanity checks, {n['sanity_holds']} hold."
        + ("" if binding else " Not a full run: the verdicts are not binding."),
        "",
        "## Sanity checks (identities the library must satisfy)",
        "",
        "| check | what | script | result |",
        "|---|---|---|---|",
    ]
    for c in sanity_checks(records):
        lines.append(f"| {c['id']} | {c['check']} | `{c['name']}` | **{c['status']}** |")
    lines += [
        "",
        "## Claims (empirical statements that could fail)",
        "",
        "| claim | experiment | lecture | seeds | measured (estimate [95% CI]) | verdict | "
        "figure | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if record_kind(r) == "sanity":
            continue
        measured = "; ".join(f"{k} = {_fmt_json(v)}" for k, v in r["measured"].items())
        if r.get("error"):
            measured = f"**crashed:** `{r['error'].splitlines()[-1]}`"
        lecture = f"{r['lecture']['author']}, *{r['lecture']['title']}*" if r.get("id") else "-"
        lines.append(
            f"| {r.get('id') or '-'} | {r['title']} (`{r['name']}`) | {lecture} | "
            f"{r.get('n_seeds') or '-'} | {measured} | **{r['status']}** | "
            f"[png]({r['figure']}) / [table]({r['table']}) | {r['seconds'] or 0:.1f} |"
        )
    lines += ["", "## Criteria", ""]
    for r in records:
        lines.append(f"- **{r.get('id') or r['name']}** ({r['mode']} run): {r['criterion']}")
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
    mode = _mode(quick, smoke)
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
    print(_common.mode_label(_mode(args.quick, args.smoke)))
    for r in results:
        print(f"{r.claim:>3} {r.name:<32} {r.status:<14} {r.seconds:6.1f}s")
    print(f"wrote {os.path.join(args.out, 'summary.md')}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
