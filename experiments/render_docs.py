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
import run_all  # noqa: E402

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
    """The record's one-line conclusion (its first measurements when it has none).

    Args:
      rec: one ``summary.json`` record.
    """
    if rec.get("error"):
        return f"crashed: {rec['error'].splitlines()[-1]}"
    if rec.get("conclusion"):
        return rec["conclusion"]
    shown = list(rec["measured"].items())[:3]
    text = "; ".join(f"{k} = {value_text(v)}" for k, v in shown)
    return f"gallery, not a claim: {text}" if not rec.get("id") else text


def earlier_design(rec: dict[str, Any]) -> bool:
    """The record was judged by a criterion that ``criteria.json`` has since replaced.

    Args:
      rec: one ``summary.json`` record.
    """
    return bool(rec.get("id")) and _common.criteria(rec["id"])["criterion"] != rec["criterion"]


def verdict_cell(rec: dict[str, Any]) -> str:
    """The record's verdict, marked when it comes from an earlier design.

    Args:
      rec: one ``summary.json`` record.
    """
    text = f"**{rec['status']}**"
    return f"{text} (earlier design; rerun pending)" if earlier_design(rec) else text


def counts_sentence(summary: dict[str, Any]) -> str:
    """``"Of the N claims, ... Of the M sanity checks, K hold."`` from the summary's counts.

    Args:
      summary: the loaded ``summary.json``.
    """
    n = run_all.counts(summary["experiments"])
    return (
        f"Of the {n['claims']} claims (empirical statements that could fail), "
        f"{n['reproduced']} reproduced, {n['not reproduced']} not reproduced, "
        f"{n['inconclusive']} inconclusive and {n['error']} crashed. Of the {n['sanity']} "
        f"sanity checks (identities the library must satisfy), {n['sanity_holds']} hold; "
        "they are not counted as claims. "
        + _modes_sentence(summary["experiments"])
        + " The schedules gallery is neither."
        + _earlier_sentence(summary)
    )


def _modes_sentence(records: list) -> str:
    quick = [rec.get("id") or rec["name"] for rec in records if rec["mode"] != "full"]
    if not quick:
        return "All from one full run."
    if len(quick) == len(records):
        return "From a quick run with smaller sizes: the verdicts are not binding."
    return (
        f"All from one full run except {', '.join(quick)}, from a quick run with smaller "
        "sizes: not binding."
    )


def _earlier_sentence(summary: dict[str, Any]) -> str:
    earlier = [rec["id"] for rec in summary["experiments"] if earlier_design(rec)]
    if not earlier:
        return ""
    return (
        f" {len(earlier)} of the verdicts ({', '.join(earlier)}) were judged by an earlier "
        "design of their claim, since redone; they stand until the gallery's next full run."
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _lecture(rec: dict[str, Any]) -> str:
    return f"{rec['lecture']['author']}, *{rec['lecture']['title']}*" if rec.get("id") else "-"


def _is_claim(rec: dict[str, Any]) -> bool:
    return run_all.record_kind(rec) != "sanity"


def sanity_table(summary: dict[str, Any]) -> list[str]:
    """The sanity checks as Markdown lines.

    Args:
      summary: the loaded ``summary.json``.
    """
    lines = ["| check | identity | script | result |", "|---|---|---|---|"]
    for c in run_all.sanity_checks(summary["experiments"]):
        lines.append(f"| {c['id']} | {_cell(c['check'])} | `{c['name']}.py` | **{c['status']}** |")
    return lines


def readme_block(summary: dict[str, Any], gallery: str = "experiments/gallery") -> str:
    """The README's generated tables: the sanity checks, then one row per claim's figure.

    Args:
      summary: the loaded ``summary.json``.
      gallery: the gallery folder relative to the README.
    """
    lines = [counts_sentence(summary), "", "**Sanity checks**", ""] + sanity_table(summary)
    lines += [
        "",
        "**Claims**",
        "",
        "| figure | lecture | conclusion | verdict |",
        "|---|---|---|---|",
    ]
    for rec in summary["experiments"]:
        if not _is_claim(rec):
            continue
        label = rec.get("id") or rec["name"]
        lines.append(
            f"| [{label}]({gallery}/{rec['figure']}) | {_cell(_lecture(rec))} | "
            f"{_cell(conclusion(rec))} | {verdict_cell(rec)} |"
        )
    return "\n".join(lines)


def docs_block(summary: dict[str, Any]) -> str:
    """docs/experiments.md's generated summary tables and per-experiment sections.

    Args:
      summary: the loaded ``summary.json``.
    """
    lines = ["## Summary", "", counts_sentence(summary), "", "### Sanity checks", ""]
    lines += sanity_table(summary)
    lines += [
        "",
        "### Claims",
        "",
        "| claim | script | claim, as tested | verdict |",
        "|---|---|---|---|",
    ]
    for rec in summary["experiments"]:
        if not _is_claim(rec):
            continue
        claim = rec.get("claim_text") or rec["title"]
        lines.append(
            f"| {rec.get('id') or '-'} | `{rec['name']}.py` | {_cell(claim)} | "
            f"{verdict_cell(rec)} |"
        )
    lines += ["", "## The experiments", ""]
    for rec in summary["experiments"]:
        what = "sanity check" if not _is_claim(rec) else "claim" if rec.get("id") else "gallery"
        lines += [f"### {rec.get('id') or rec['name']}. {rec['title']} ({what})", ""]
        if rec.get("quote"):
            lecture = rec["lecture"]
            lines += [
                f"> {rec['quote']}",
                ">",
                f'> — {lecture["author"]}, "{lecture["title"]}"',
                "",
            ]
        if rec.get("claim_text"):
            lines += [f"- As tested: {rec['claim_text']}"]
        said = _common.SANITY_WORDS[rec["status"]] if what == "sanity check" else rec["status"]
        if rec["status"] == "error":
            said = "error"
        lines += [
            f"- Script: `experiments/{rec['name']}.py` — figure "
            f"`experiments/gallery/{rec['figure']}` ({_common.mode_label(rec['mode'])})",
            f"- Criterion: {rec['criterion']}",
            f"- Result: **{said}**. {conclusion(rec)}",
        ]
        if earlier_design(rec):
            lines.append(
                "- Judged by the criterion above, an earlier design of this claim; the "
                "redone design (`experiments/criteria.json`) awaits the next full run."
            )
        for label, verdict in rec.get("sanity", {}).items():
            lines.append(f"- Sanity check {label}: **{_common.SANITY_WORDS[verdict]}**")
        measured = "; ".join(f"{k} = {value_text(v)}" for k, v in rec["measured"].items())
        if measured:
            lines.append(f"- Measured (estimate [95% interval]): {measured}")
        if rec.get("theory"):
            lines.append(f"- Theory: {rec['theory']}")
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
