"""Write the experiment tables of README.md and docs/experiments.md from summary.json.

    python experiments/render_docs.py [--summary experiments/gallery/summary.json] [--check]

The text between ``<!-- experiments:begin -->`` and ``<!-- experiments:end -->`` in each
page is generated here from the committed gallery's ``summary.json`` and from
``criteria.json`` (the lecture quotes); nothing else in the pages is touched. With
``--check`` nothing is written and the exit status is 1 when a page is out of date
(``tests/test_experiments.py`` runs the same comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _common  # noqa: E402

BEGIN, END = "<!-- experiments:begin -->", "<!-- experiments:end -->"
SUMMARY = os.path.join(HERE, "gallery", "summary.json")
PAGES = {"README.md": "readme", os.path.join("docs", "experiments.md"): "docs"}


def load(path: str = SUMMARY) -> dict[str, Any]:
    """The summary written by ``run_all`` (``{"counts": ..., "experiments": [...]}``).

    Args:
      path: the ``summary.json`` to read.
    """
    with open(path) as f:
        return json.load(f)


def value_text(value: Any) -> str:
    """A measured value as text: ``mean [lo, hi]`` for an estimate with an interval.

    Args:
      value: a number, text, or ``{"mean", "ci95", "n"}`` from ``summary.json``.
    """
    if isinstance(value, dict) and "mean" in value:
        lo, hi = value["ci95"]
        if value["n"] == 1 or lo == hi:
            return _common.fmt(value["mean"])
        return f"{_common.fmt(value['mean'])} [{_common.fmt(lo)}, {_common.fmt(hi)}]"
    return _common.fmt(value)


def conclusion(rec: dict[str, Any]) -> str:
    """The record's one-line conclusion; for a claim not yet redone, its first measurements.

    Args:
      rec: one ``summary.json`` record.
    """
    if rec.get("error"):
        return f"crashed: {rec['error'].splitlines()[-1]}"
    if rec.get("conclusion"):
        return rec["conclusion"]
    shown = list(rec["measured"].items())[:3]
    text = "; ".join(f"{k} = {value_text(v)}" for k, v in shown)
    if not rec.get("id"):
        return f"gallery, not a claim: {text}"
    return f"not yet redone with tuned arms and intervals; {text}"


def counts_sentence(summary: dict[str, Any]) -> str:
    """``"Of the 19 claims, N reproduced, ..."`` from the summary's counts (claims only).

    Args:
      summary: the loaded ``summary.json``.
    """
    n = summary["counts"]
    redone = sum(1 for r in summary["experiments"] if r.get("id") and r.get("redone"))
    commits = sorted(
        {str(r.get("criteria_commit"))[:10] for r in summary["experiments"] if r.get("id")}
    )
    modes = sorted({r["mode"] for r in summary["experiments"]})
    return (
        f"Of the {n['claims']} claims, {n['reproduced']} reproduced, {n['not reproduced']} "
        f"not reproduced, {n['inconclusive']} inconclusive and {n['error']} crashed "
        f"({' + '.join(modes)} run; criteria commit {', '.join(commits)}; "
        f"{redone} of {n['claims']} claims redone with tuned arms, seeds and 95% intervals, "
        "the others still judged by their earlier pass/fail criterion). The schedules "
        "gallery is not a claim and is not counted."
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _history(rec: dict[str, Any]) -> str:
    return "; ".join(f"{h['verdict']}, {h['run']}" for h in rec.get("history", [])) or "-"


def readme_block(summary: dict[str, Any], gallery: str = "experiments/gallery") -> str:
    """The README's generated table: one row per experiment, one conclusion per figure.

    Args:
      summary: the loaded ``summary.json``.
      gallery: the gallery folder relative to the README.
    """
    lines = [
        counts_sentence(summary),
        "",
        "| figure | lecture | conclusion | verdict | earlier verdict |",
        "|---|---|---|---|---|",
    ]
    for rec in summary["experiments"]:
        label = rec.get("id") or rec["name"]
        lecture = (
            f"{rec['lecture']['author']}, *{rec['lecture']['title']}*" if rec.get("id") else "-"
        )
        lines.append(
            f"| [{label}]({gallery}/{rec['figure']}) | {_cell(lecture)} | "
            f"{_cell(conclusion(rec))} | **{rec['status']}** | {_cell(_history(rec))} |"
        )
    return "\n".join(lines)


def docs_block(summary: dict[str, Any]) -> str:
    """docs/experiments.md's generated summary table and per-claim sections.

    Args:
      summary: the loaded ``summary.json``.
    """
    lines = [
        "## Summary",
        "",
        counts_sentence(summary),
        "",
        "| claim | script | claim, as tested | verdict |",
        "|---|---|---|---|",
    ]
    for rec in summary["experiments"]:
        claim = rec.get("claim_text") or rec["title"]
        lines.append(
            f"| {rec.get('id') or '-'} | `{rec['name']}.py` | {_cell(claim)} | "
            f"**{rec['status']}** |"
        )
    lines += ["", "## The claims", ""]
    for rec in summary["experiments"]:
        lines += [f"### {rec.get('id') or rec['name']}. {rec['title']}", ""]
        if rec.get("quote"):
            lecture = rec["lecture"]
            lines += [
                f"> {rec['quote']}",
                ">",
                f'> — {lecture["author"]}, "{lecture["title"]}"',
                "",
            ]
        if rec.get("claim_text"):
            lines += [f"- Claim, as tested: {rec['claim_text']}"]
        lines += [
            f"- Script: `experiments/{rec['name']}.py` — figure "
            f"`experiments/gallery/{rec['figure']}` ({rec['mode']} run)",
            f"- Criterion: {rec['criterion']}",
            f"- Verdict: **{rec['status']}**. {conclusion(rec)}",
        ]
        measured = "; ".join(f"{k} = {value_text(v)}" for k, v in rec["measured"].items())
        if measured:
            lines.append(f"- Measured (mean [95% interval]): {measured}")
        if rec.get("theory"):
            lines.append(f"- Theory: {rec['theory']}")
        for h in rec.get("history", []):
            lines.append(f"- Earlier criterion ({h['run']}), {h['verdict']}: {h['criterion']}")
        lines.append("")
    return "\n".join(lines).rstrip()


def replace_block(text: str, block: str, page: str) -> str:
    """``text`` with the part between the markers replaced by ``block``.

    Args:
      text: the page.
      block: the generated content.
      page: the page's name, for the error message.

    Raises:
      ValueError: the page lacks the markers.
    """
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"page {page!r} must hold {BEGIN} and {END} once each")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def rendered(summary: dict[str, Any], root: str = ROOT) -> dict[str, str]:
    """Every page's full text with its generated part brought up to date.

    Args:
      summary: the loaded ``summary.json``.
      root: the repository root.
    """
    out = {}
    for page, kind in PAGES.items():
        with open(os.path.join(root, page)) as f:
            text = f.read()
        block = readme_block(summary) if kind == "readme" else docs_block(summary)
        out[page] = replace_block(text, block, page)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--summary", default=SUMMARY, help="summary.json to render")
    p.add_argument("--check", action="store_true", help="only check that the pages are current")
    args = p.parse_args(argv)
    stale = []
    for page, text in rendered(load(args.summary)).items():
        path = os.path.join(ROOT, page)
        with open(path) as f:
            current = f.read()
        if current != text:
            stale.append(page)
            if not args.check:
                with open(path, "w") as f:
                    f.write(text)
    verb = "out of date" if args.check else "rewritten"
    print(f"{verb}: {', '.join(stale) or 'none'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
