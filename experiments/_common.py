"""Shared layer of the experiment scripts: the result record, figure/table writers, the CLI.

Every experiment is one module ``experiments/<name>.py`` that defines

* the constants ``CLAIM`` (the issue's claim number, ``0`` for a gallery with no claim),
  ``TITLE`` (one line), ``SEEDS`` (the lecture seeds, e.g. ``("000", "002")``) and
  ``CRITERION`` (what "reproduced" means, fixed before the run — never tuned after it);
* ``run(out_dir, quick=False, smoke=False) -> Result``, which writes
  ``out_dir/<name>.png`` (:func:`save_figure`) and ``out_dir/<name>.md``
  (:func:`write_table`) and nothing else;
* ``if __name__ == "__main__": raise SystemExit(main(run, __doc__))``.

A claim's lecture quote, testable statement, criterion and number of seeds live in
``experiments/criteria.json`` (read with :func:`criteria`), committed before the runs
that it judges; ``run_all`` records that commit in ``summary.json``. A script states
its verdict with :func:`judge` (``"reproduced"``, ``"not reproduced"`` or
``"inconclusive"``) on estimates from :func:`mean_ci` / :func:`paired_ci` (differences,
log ratios), :func:`positive_ci` (steps, losses: log scale), :func:`wilson_ci`
(fractions) or :func:`bootstrap_ci`, joins sub-criteria with :func:`combine` (Holm), and
draws with :func:`band` and :func:`finish_axes`. Identities the library must satisfy are
sanity checks: a script of ``"kind": "sanity"`` in ``criteria.json`` is one as a whole,
and a claim passes its own sub-checks as ``sanity={label: verdict}`` to :func:`report`.
:func:`stamp` (called by ``run_all`` and :func:`main`) marks the figure and the table
with the run's mode; only a full run's verdicts are binding.

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
import subprocess
from typing import Any, Callable, Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DEFAULT_OUT = os.path.join("experiments", "results")
HERE = os.path.dirname(os.path.abspath(__file__))
CRITERIA_FILE = os.path.join(HERE, "criteria.json")
VERDICTS = ("reproduced", "not reproduced", "inconclusive")
LECTURES = {
    "000": 'J. Petersen, "Optimization in Deep Learning"',
    "001": '"Deep Learning Note 2 — Part 2: Optimization" (notes on Andrew Ng\'s course)',
    "002": 'K. Bipin, "Deep Learning, Lecture 6 — Optimization"',
    "003": 'R. Neychev, "Optimization and regularization in Deep Learning"',
    "004": 'G. Kim, "Optimization and Tips for Neural Network Training"',
}

Number = float | int


@dataclasses.dataclass
class Estimate:
    """A measured number with its 95% confidence interval over ``n`` seeds.

    Attributes:
      mean: the sample mean (the value itself when ``n == 1``).
      lo: lower end of the 95% confidence interval (t-distribution).
      hi: upper end of the interval.
      n: number of seeds (independent runs) behind the estimate.
    """

    mean: float
    lo: float
    hi: float
    n: int
    pvalue: Optional[Callable[[float, str], float]] = dataclasses.field(
        default=None, repr=False, compare=False
    )

    def p_value(self, bar: float, claim_holds_when: str) -> float:
        """One-sided p-value of the null "the true value is on the wrong side of ``bar``".

        The test is the one the interval inverts (t, log-t, Wilson score or bootstrap),
        so ``p < 0.025`` exactly when the 95% interval clears the bar. An estimate built
        by hand (no test attached) uses the normal test its interval implies.

        Args:
          bar: the threshold.
          claim_holds_when: ``"above"`` or ``"below"``: the side on which the claim holds.
        """
        _check_side(claim_holds_when)
        if self.pvalue is not None:
            return float(self.pvalue(bar, claim_holds_when))
        from scipy import stats

        sign = 1.0 if claim_holds_when == "above" else -1.0
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return 1.0
        if self.hi == self.lo:
            return 0.0 if sign * (self.mean - bar) > 0 else 1.0
        se = (self.hi - self.lo) / (2 * stats.norm.ppf(0.975))
        return float(stats.norm.sf(sign * (self.mean - bar) / se))

    def __str__(self) -> str:
        if self.n == 1 or self.lo == self.hi:
            return fmt(self.mean)
        return f"{fmt(self.mean)} [{fmt(self.lo)}, {fmt(self.hi)}] (n={self.n})"

    def to_dict(self) -> dict[str, Any]:
        """``{"mean", "ci95": [lo, hi], "n"}``, JSON-ready."""
        return {
            "mean": _jsonable(self.mean),
            "ci95": [_jsonable(self.lo), _jsonable(self.hi)],
            "n": self.n,
        }


def _check_side(claim_holds_when: str) -> None:
    if claim_holds_when not in ("above", "below"):
        raise ValueError(f"claim_holds_when must be 'above' or 'below', got {claim_holds_when!r}")


def _t_pvalue(mean: float, se: float, df: int) -> Callable[[float, str], float]:
    """The one-sided t-test against a bar, for an estimate ``mean`` with standard error ``se``."""

    def pvalue(bar: float, claim_holds_when: str) -> float:
        from scipy import stats

        sign = 1.0 if claim_holds_when == "above" else -1.0
        if se == 0:
            return 0.0 if sign * (mean - bar) > 0 else 1.0
        return float(stats.t.sf(sign * (mean - bar) / se, df))

    return pvalue


def mean_ci(samples: Any, level: float = 0.95) -> Estimate:
    """Mean and two-sided t-distribution confidence interval of independent samples.

    For a quantity that can be negative (a difference, a log ratio). Positive
    quantities that span a range (steps, losses) take :func:`positive_ci`, fractions of
    successes :func:`wilson_ci`.

    Args:
      samples: one number per seed (any array-like; flattened). Non-finite values
        propagate (a diverged seed makes the interval infinite, not narrower).
      level: confidence level of the interval.

    Returns:
      The :class:`Estimate`; with one sample the interval is the value itself.
    """
    import numpy as np
    from scipy import stats

    x = np.asarray(samples, np.float64).ravel()
    if x.size == 0:
        raise ValueError("samples must hold at least one value, got an empty array")
    mean = float(np.mean(x))
    if x.size == 1 or not np.all(np.isfinite(x)):
        spread = 0.0 if x.size == 1 else math.inf
        return Estimate(mean, mean - spread, mean + spread, int(x.size))
    se = float(np.std(x, ddof=1) / np.sqrt(x.size))
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * se)
    return Estimate(mean, mean - half, mean + half, int(x.size), _t_pvalue(mean, se, x.size - 1))


def paired_ci(a: Any, b: Any, level: float = 0.95) -> Estimate:
    """Confidence interval of the mean paired difference ``a - b`` (same seeds in both).

    Args:
      a: per-seed values of the first arm.
      b: per-seed values of the second arm, seed ``i`` paired with ``a[i]``.
      level: confidence level.

    Returns:
      The :class:`Estimate` of ``mean(a - b)``.
    """
    import numpy as np

    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b must pair seed by seed, got shapes a={a.shape}, b={b.shape}")
    return mean_ci(a - b, level)


def positive_ci(samples: Any, level: float = 0.95) -> Estimate:
    """Geometric mean and t-interval on the log scale of positive samples.

    The interval of a positive quantity (steps, a loss, a ratio) stays positive: it is
    the t-interval of ``log x`` mapped back with ``exp``.

    Args:
      samples: one positive number per seed (flattened); ``inf`` (a diverged seed)
        makes the interval infinite.
      level: confidence level.

    Returns:
      The :class:`Estimate` (``mean`` is the geometric mean).

    Raises:
      ValueError: a sample is zero, negative or NaN.
    """
    import numpy as np

    x = np.asarray(samples, np.float64).ravel()
    if x.size == 0:
        raise ValueError("samples must hold at least one value, got an empty array")
    if np.any(np.isnan(x)) or np.any(x <= 0):
        raise ValueError(f"samples must be positive, got {x[(x <= 0) | np.isnan(x)][:3]}")
    if not np.all(np.isfinite(x)):
        return Estimate(math.inf, math.inf, math.inf, int(x.size))
    log = mean_ci(np.log(x), level)
    inner = log.pvalue

    def pvalue(bar: float, claim_holds_when: str) -> float:
        if bar <= 0:
            return 0.0 if claim_holds_when == "above" else 1.0
        return inner(math.log(bar), claim_holds_when)

    return Estimate(
        math.exp(log.mean),
        math.exp(log.lo),
        math.exp(log.hi),
        log.n,
        None if inner is None else pvalue,
    )


def wilson_ci(successes: Any, n: Optional[int] = None, level: float = 0.95) -> Estimate:
    """Fraction of successes with its Wilson score interval.

    Args:
      successes: the number of successes (with ``n``), or an array of booleans /
        0-1 outcomes (``n`` left out).
      n: the number of trials when ``successes`` is a count.
      level: confidence level.

    Returns:
      The :class:`Estimate` of the fraction; its test is the score test the interval
      inverts.
    """
    import numpy as np
    from scipy import stats

    if n is None:
        outcomes = np.asarray(successes).ravel()
        if outcomes.size == 0 or not np.all(np.isin(outcomes, (0, 1))):
            raise ValueError("successes must be a non-empty array of 0/1 outcomes")
        k, n = int(outcomes.sum()), int(outcomes.size)
    else:
        k, n = int(successes), int(n)
        if n < 1 or not 0 <= k <= n:
            raise ValueError(f"need 0 <= successes <= n and n >= 1, got successes={k}, n={n}")
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))

    def pvalue(bar: float, claim_holds_when: str) -> float:
        sign = 1.0 if claim_holds_when == "above" else -1.0
        if bar <= 0 or bar >= 1:
            return 0.0 if sign * (p - bar) > 0 else 1.0
        return float(stats.norm.sf(sign * (p - bar) / math.sqrt(bar * (1 - bar) / n)))

    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n, pvalue)


def bootstrap_ci(
    samples: Any,
    statistic: Optional[Callable[[Any], float]] = None,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> Estimate:
    """A statistic of independent samples with its percentile bootstrap interval.

    For statistics without a handy sampling distribution (a median, a width counted in
    grid points).

    Args:
      samples: one number per seed (flattened).
      statistic: ``array -> float`` (the mean when ``None``).
      level: confidence level.
      n_boot: number of resamples.
      seed: seed of the resampling (the interval is reproducible).

    Returns:
      The :class:`Estimate`; its test reads the resampled statistics.
    """
    import numpy as np

    x = np.asarray(samples, np.float64).ravel()
    if x.size == 0:
        raise ValueError("samples must hold at least one value, got an empty array")
    statistic = statistic or np.mean
    value = float(statistic(x))
    idx = np.random.default_rng(seed).integers(0, x.size, (n_boot, x.size))
    boot = np.sort(np.array([statistic(x[i]) for i in idx], np.float64))
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])

    def pvalue(bar: float, claim_holds_when: str) -> float:
        wrong = boot <= bar if claim_holds_when == "above" else boot >= bar
        return float(np.mean(wrong))

    return Estimate(value, float(lo), float(hi), int(x.size), pvalue)


def holm(pvalues: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down procedure: which null hypotheses are rejected at family level ``alpha``.

    Args:
      pvalues: one p-value per hypothesis.
      alpha: the family-wise error rate.

    Returns:
      One boolean per hypothesis, in the input's order.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    rejected = [False] * len(pvalues)
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (len(pvalues) - rank):
            break
        rejected[i] = True
    return rejected


ALPHA = 0.025  # one-sided level of each direction: the 95% two-sided interval's


class Judgement(str):
    """A verdict (one of :data:`VERDICTS`) that carries the tests behind it.

    ``tests`` holds one ``(p_holds, p_fails)`` pair per sub-criterion: the one-sided
    p-value of "the claim's side is wrong" and of "the claim's side is right".
    """

    tests: tuple[tuple[float, float], ...]

    def __new__(cls, verdict: str, tests: Sequence[tuple[float, float]]) -> "Judgement":
        obj = super().__new__(cls, verdict)
        obj.tests = tuple(tests)
        return obj


def judge(estimate: Estimate, bar: float, claim_holds_when: str) -> Judgement:
    """Verdict of one sub-criterion: the whole interval must clear the bar.

    Args:
      estimate: the measured value with its confidence interval.
      bar: the threshold fixed in the criterion (with its margin already in it).
      claim_holds_when: ``"above"`` (claim holds for values > bar) or ``"below"``.

    Returns:
      ``"reproduced"`` when the whole interval lies on the claim's side of the bar,
      ``"not reproduced"`` when it lies wholly on the other side, else
      ``"inconclusive"`` (the bar is inside the noise). The result carries the
      one-sided tests for :func:`combine`.
    """
    _check_side(claim_holds_when)
    lo, hi = (
        (estimate.lo, estimate.hi) if claim_holds_when == "above" else (-estimate.hi, -estimate.lo)
    )
    signed = bar if claim_holds_when == "above" else -bar
    verdict = "reproduced" if lo > signed else "not reproduced" if hi < signed else "inconclusive"
    other = "below" if claim_holds_when == "above" else "above"
    tests = [(estimate.p_value(bar, claim_holds_when), estimate.p_value(bar, other))]
    return Judgement(verdict, tests)


def combine(verdicts: Sequence[str]) -> Judgement:
    """Verdict of a claim whose sub-criteria must all hold, Holm-controlled.

    Each sub-criterion is a one-sided test in each direction. The claim is
    ``"reproduced"`` when Holm's procedure rejects every "this sub-criterion fails"
    null at family level :data:`ALPHA`, ``"not reproduced"`` when it rejects at least
    one "this sub-criterion holds" null at that level, else ``"inconclusive"``. With
    one sub-criterion this is :func:`judge`'s interval rule. A plain verdict string (a
    count with no test, e.g. "every seed reached the target") enters as certain;
    nested results of ``combine`` are flattened into one family.

    Args:
      verdicts: the sub-criteria's verdicts (each one of :data:`VERDICTS`, as returned
        by :func:`judge` or :func:`combine`, or a plain string).

    Returns:
      The claim's :class:`Judgement`.
    """
    tests = []
    for v in verdicts:
        if v not in VERDICTS:
            raise ValueError(f"verdicts must be among {VERDICTS}, got {v!r}")
        if isinstance(v, Judgement):
            tests += v.tests
        else:
            tests.append((0.0 if v == "reproduced" else 1.0, 0.0 if v == "not reproduced" else 1.0))
    if not tests:
        raise ValueError("verdicts must hold at least one verdict, got []")
    if any(holm([t[1] for t in tests], ALPHA)):
        verdict = "not reproduced"
    elif all(holm([t[0] for t in tests], ALPHA)):
        verdict = "reproduced"
    else:
        verdict = "inconclusive"
    return Judgement(verdict, tests)


def criteria(claim_id: Optional[str] = None) -> Any:
    """The pre-registered criteria (``experiments/criteria.json``).

    Args:
      claim_id: ``"c01"`` ... ``"c19"`` for one claim's entry; ``None`` for all.

    Returns:
      The entry (dict with ``lecture``, ``quote``, ``claim``, ``criterion``,
      ``seeds``, ...) or the whole mapping.
    """
    with open(CRITERIA_FILE) as f:
        table = json.load(f)["claims"]
    if claim_id is None:
        return table
    if claim_id not in table:
        raise ValueError(f"claim_id must be one of {sorted(table)}, got {claim_id!r}")
    return table[claim_id]


def criteria_commit() -> dict[str, Any]:
    """The git commit that last changed ``criteria.json`` and whether it has changed since.

    Returns:
      ``{"commit": hash or None, "uncommitted_changes": bool}``.
    """

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", HERE, *args], capture_output=True, text=True)

    log = git("log", "-1", "--format=%H", "--", CRITERIA_FILE)
    commit = log.stdout.strip() or None if log.returncode == 0 else None
    dirty = git("diff", "--quiet", "HEAD", "--", CRITERIA_FILE).returncode != 0
    return {"commit": commit, "uncommitted_changes": bool(dirty or commit is None)}


@dataclasses.dataclass
class Result:
    """What one experiment measured and whether the lecture's claim reproduced.

    Attributes:
      name: the script's module name (``"c06_clipping_cliff"``); also the stem of its
        figure and table.
      claim: claim number (``0``: a gallery without a claim).
      title: one-line statement of the claim.
      seeds: lecture files the claim comes from.
      criterion: the test for "reproduced", as fixed before the run.
      measured: the numbers the criterion reads (name -> number, :class:`Estimate` or
        short text).
      verdict: ``"reproduced"``, ``"not reproduced"`` or ``"inconclusive"``.
      conclusion: one line that states what the figure shows, from the numbers.
      theory: for a claim not reproduced, the paragraph that explains it.
      figure: path of the PNG, or ``None`` when the script failed before writing it.
      table: path of the Markdown table, or ``None``.
      sanity: the sanity checks the script also runs (label -> verdict): identities the
        library must satisfy, reported apart from the claim and not counted with it.
      error: the exception text when the script crashed (set by ``run_all``).
      seconds: wall time of the run (set by ``run_all``).
    """

    name: str
    claim: int
    title: str
    seeds: tuple[str, ...]
    criterion: str
    measured: dict[str, Any]
    verdict: str
    conclusion: str = ""
    theory: str = ""
    figure: Optional[str] = None
    table: Optional[str] = None
    sanity: dict[str, str] = dataclasses.field(default_factory=dict)
    error: Optional[str] = None
    seconds: Optional[float] = None

    @property
    def reproduced(self) -> bool:
        """Whether the verdict is ``"reproduced"``."""
        return self.verdict == "reproduced"

    @property
    def status(self) -> str:
        """The verdict, or ``"error"`` when the script crashed."""
        return "error" if self.error is not None else self.verdict

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN and inf become strings, estimates become dicts)."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        record["seeds"] = list(self.seeds)
        record["measured"] = {k: _jsonable(v) for k, v in self.measured.items()}
        record["verdict"] = str(self.verdict)
        record["sanity"] = {k: str(v) for k, v in self.sanity.items()}
        record["status"] = self.status
        return record


def _jsonable(value: Any) -> Any:
    if isinstance(value, Estimate):
        return value.to_dict()
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
    reproduced: Optional[bool],
    figure: str,
    table: str,
    verdict: Optional[str] = None,
    conclusion: str = "",
    theory: str = "",
    sanity: Optional[Mapping[str, str]] = None,
) -> Result:
    """Build a :class:`Result` from a script's constants (pass ``globals()``).

    Args:
      module_globals: the script's ``globals()`` (``CLAIM``, ``TITLE``, ``SEEDS``,
        ``CRITERION``).
      measured: the numbers the criterion reads.
      reproduced: pass/fail of a script judged without confidence intervals; ``None``
        when ``verdict`` is given.
      figure: path of the figure written.
      table: path of the table written.
      verdict: one of :data:`VERDICTS` (overrides ``reproduced``).
      conclusion: one line for the gallery, from the numbers.
      theory: the explanation of a result that did not reproduce.
      sanity: the script's sanity checks (label -> verdict), kept apart from the claim.
    """
    name = module_globals["__name__"].rsplit(".", 1)[-1]
    if name == "__main__":
        name = os.path.splitext(os.path.basename(module_globals["__file__"]))[0]
    if verdict is None:
        if reproduced is None:
            raise ValueError("pass reproduced (a bool) or verdict, got neither")
        verdict = "reproduced" if reproduced else "not reproduced"
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return Result(
        name=name,
        claim=int(module_globals["CLAIM"]),
        title=module_globals["TITLE"],
        seeds=tuple(module_globals["SEEDS"]),
        criterion=module_globals["CRITERION"],
        measured=dict(measured),
        verdict=verdict,
        conclusion=conclusion,
        theory=theory,
        figure=figure,
        table=table,
        sanity=dict(sanity or {}),
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
    if isinstance(value, Estimate):
        return str(value)
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


def report(
    module_globals: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    out: str,
    measured: Mapping[str, Any],
    figure: str,
    verdict: str,
    setup: str,
    conclusion: str,
    theory: str,
    extra_tables: Optional[Mapping[str, Sequence[Mapping[str, Any]]]] = None,
    sanity: Optional[Mapping[str, str]] = None,
) -> Result:
    """Write a claim's table (with the standard notes) and return its :class:`Result`.

    Args:
      module_globals: the script's ``globals()`` (``NAME``, ``TITLE``, ``CLAIM``, ...).
      rows: the main table.
      out: output folder.
      measured: the numbers the criterion reads.
      figure: path of the figure written.
      verdict: one of :data:`VERDICTS`.
      setup: one paragraph on what was run.
      conclusion: one line for the gallery.
      theory: the explanation of a verdict short of reproduced.
      extra_tables: more tables under sub-headings.
      sanity: the script's sanity checks (label -> verdict), reported apart from the
        claim's verdict.
    """
    notes = verdict_notes(module_globals, verdict, setup, theory, sanity)
    table = write_table(
        rows, out, module_globals["NAME"], module_globals["TITLE"], notes, extra_tables
    )
    return result(
        module_globals,
        measured,
        None,
        figure,
        table,
        verdict=verdict,
        conclusion=conclusion,
        theory=theory,
        sanity=sanity,
    )


SANITY_WORDS = {"reproduced": "holds", "not reproduced": "fails", "inconclusive": "inconclusive"}


def kind(claim: int) -> str:
    """``"sanity"`` for a script that checks an identity, ``"claim"`` for an empirical claim.

    Args:
      claim: the claim number (``0``: the gallery, reported as ``"gallery"``).
    """
    if claim <= 0:
        return "gallery"
    return criteria(f"c{claim:02d}").get("kind", "claim")


def verdict_notes(
    module_globals: Mapping[str, Any],
    reproduced: bool | str,
    setup: str,
    theory: str = "",
    sanity: Optional[Mapping[str, str]] = None,
) -> list[str]:
    """The standard preamble of a table: quote, claim, setup, criterion, verdict, theory.

    Args:
      module_globals: the script's ``globals()``.
      reproduced: the verdict (one of :data:`VERDICTS`), or a bool for a pass/fail script.
      setup: one paragraph on what was run.
      theory: the explanation of a claim that did not reproduce (omitted when empty).
      sanity: the script's sanity checks (label -> verdict), listed after the verdict.
    """
    if isinstance(reproduced, bool):
        reproduced = "reproduced" if reproduced else "not reproduced"
    seeds = "; ".join(LECTURES.get(s, s) for s in module_globals["SEEDS"])
    lines = []
    claim_id = f"c{int(module_globals['CLAIM']):02d}"
    if int(module_globals["CLAIM"]) > 0:
        entry = criteria(claim_id)
        if entry.get("quote"):
            lecture = entry["lecture"]
            lines.append(f'> {entry["quote"]}\n>\n> — {lecture["author"]}, "{lecture["title"]}"')
    if kind(int(module_globals["CLAIM"])) == "sanity":
        head = f"**Sanity check {module_globals['CLAIM']}** (an identity the library must satisfy"
        head += f", not counted as a claim; {seeds})"
        said = f"**Sanity check:** {SANITY_WORDS[str(reproduced)]}"
    else:
        head = f"**Claim {module_globals['CLAIM']}** ({seeds})"
        said = f"**Verdict:** {reproduced}"
    lines += [
        f"{head}: {module_globals['TITLE']}",
        f"**Setup:** {setup}",
        f"**Criterion:** {module_globals['CRITERION']}",
        said,
    ]
    for label, verdict in (sanity or {}).items():
        lines.append(f"**Sanity check {label}:** {SANITY_WORDS[str(verdict)]}")
    if theory:
        lines.append(f"**Theory:** {theory}")
    return lines


def band(
    ax: Any,
    x: Any,
    y: Any,
    label: str,
    color: Optional[str] = None,
    geometric: bool = False,
    bounds: Optional[tuple[float, float]] = None,
    **kwargs: Any,
) -> None:
    """Draw the mean of ``y`` over seeds and, with several seeds, its 95% confidence band.

    Args:
      ax: matplotlib axes.
      x: ``(T,)`` abscissae.
      y: ``(T,)`` one curve, or ``(seeds, T)`` one curve per seed.
      label: legend label (the number of seeds is appended when there are several).
      color: line colour (matplotlib's cycle when ``None``).
      geometric: average ``log10 y`` (a positive quantity spanning decades, drawn on a
        log axis): the line is the geometric mean and the band stays positive.
      bounds: ``(lo, hi)`` the quantity cannot leave (an accuracy: ``(0, 1)``); the band
        is cut there.
      **kwargs: passed on to ``ax.plot`` (``ls``, ``lw``, ``marker``, ...).
    """
    import numpy as np
    from scipy import stats

    y = np.asarray(y, np.float64)
    if y.ndim == 1:
        ax.plot(x, y, label=label, color=color, **kwargs)
        return
    n = y.shape[0]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        z = np.log10(y) if geometric else y
        mean = np.mean(z, axis=0)
        half = stats.t.ppf(0.975, max(n - 1, 1)) * np.std(z, axis=0, ddof=1) / np.sqrt(n)
        lo, hi = mean - half, mean + half
        if geometric:
            mean, lo, hi = 10**mean, 10**lo, 10**hi
        if bounds is not None:
            lo, hi = np.clip(lo, *bounds), np.clip(hi, *bounds)
    kind = "geometric mean" if geometric else "mean"
    (line,) = ax.plot(x, mean, label=f"{label} ({kind} of {n}, 95% CI)", color=color, **kwargs)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)


def finish_axes(
    ax: Any,
    xlabel: str,
    ylabel: str,
    title: str,
    logx: Optional[bool] = None,
    logy: Optional[bool] = None,
    legend: bool = True,
    legend_size: int = 8,
) -> None:
    """Label an axes and fit its limits to every finite point drawn on it.

    Log scale is chosen where the positive data span more than two decades (unless
    ``logx`` / ``logy`` says otherwise); the limits enclose every finite point of every
    line and band, so no curve leaves the axes (diverged, infinite values are not drawn:
    say so in the label).

    Args:
      ax: matplotlib axes.
      xlabel: x label, with units (``"step"``, ``"learning rate"``, ``"loss (nats)"``).
      ylabel: y label, with units.
      title: axes title.
      logx: force (``True``) or forbid (``False``) a log x axis; ``None``: automatic.
      logy: the same for y.
      legend: whether to draw the legend.
      legend_size: legend font size.
    """
    import numpy as np

    xs, ys = [], []
    for line in ax.get_lines():
        if line.get_transform() != ax.transData:  # axhline / axvline span the axes
            continue
        xs.append(np.asarray(line.get_xdata(), np.float64).ravel())
        ys.append(np.asarray(line.get_ydata(), np.float64).ravel())
    for coll in ax.collections:
        for path in getattr(coll, "get_paths", lambda: [])():
            xs.append(path.vertices[:, 0])
            ys.append(path.vertices[:, 1])
    for axis, values, log in (("x", xs, logx), ("y", ys, logy)):
        v = np.concatenate(values) if values else np.zeros(0)
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        positive = v[v > 0]
        if log is None:
            log = bool(v.min() > 0 and positive.max() / positive.min() > 100)
        if log:
            getattr(ax, f"set_{axis}scale")("log")
            lo, hi = positive.min(), positive.max()
            lo, hi = lo / 1.5, hi * 1.5
        else:
            lo, hi = v.min(), v.max()
            pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
            lo, hi = lo - pad, hi + pad
        getattr(ax, f"set_{axis}lim")(lo, hi)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend(fontsize=legend_size)


def mode_label(mode: str) -> str:
    """How a run's verdicts may be read: ``full`` runs bind, the smaller ones do not.

    Args:
      mode: ``"full"``, ``"quick"`` or ``"smoke"``.
    """
    if mode not in ("full", "quick", "smoke"):
        raise ValueError(f"mode must be 'full', 'quick' or 'smoke', got {mode!r}")
    return "full run" if mode == "full" else f"{mode} run: smaller sizes, verdict not binding"


def stamp(res: Result, mode: str) -> None:
    """Mark a finished run's figure and table with its mode and one-line conclusion.

    The figure gets a footer ``"<mode label>. <conclusion>"``; in a run that is not
    ``full`` the table's verdict line says that the verdict is not binding.

    Args:
      res: the run's result (its ``figure`` and ``table`` are rewritten in place).
      mode: ``"full"``, ``"quick"`` or ``"smoke"``.
    """
    import textwrap

    label = mode_label(mode)
    if res.figure and os.path.exists(res.figure):
        image = plt.imread(res.figure)
        height, width = image.shape[:2]
        text = f"{label[0].upper()}{label[1:]}. {res.conclusion}".strip()
        text = textwrap.fill(text, max(60, int(width / 7.5)))  # ~7.5 px per character
        footer = 22 * (text.count("\n") + 1) + 10
        fig = plt.figure(figsize=(width / 100, (height + footer) / 100), dpi=100)
        ax = fig.add_axes((0, footer / (height + footer), 1, height / (height + footer)))
        ax.imshow(image)
        ax.set_axis_off()
        fig.text(0.01, (footer - 6) / (height + footer), text, va="top", fontsize=9)
        fig.savefig(res.figure, dpi=100)
        plt.close(fig)
    if res.table and os.path.exists(res.table) and mode != "full":
        with open(res.table) as f:
            text = f.read()
        for word in ("**Verdict:**", "**Sanity check:**"):
            text = text.replace(word, f"{word[:-3]} ({label}):**")
        with open(res.table, "w") as f:
            f.write(text)


def parser(description: str) -> argparse.ArgumentParser:
    """The standard command line: ``--quick``, ``--smoke`` and ``--out DIR``."""
    p = argparse.ArgumentParser(description=description)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smaller run (about a minute)")
    mode.add_argument("--full", action="store_true", help="full sizes (the default)")
    mode.add_argument("--smoke", action="store_true", help="tiny run (seconds; for tests)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    return p


def main(
    run: Callable[..., Result], doc: Optional[str], argv: Optional[Sequence[str]] = None
) -> int:
    """Run one experiment from the command line and print its verdict; exit status 0."""
    args = parser((doc or "").strip().splitlines()[0] if doc else "").parse_args(argv)
    res = run(args.out, quick=args.quick, smoke=args.smoke)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    stamp(res, mode)
    said = res.status
    if kind(res.claim) == "sanity" and res.error is None:
        said = f"sanity check {SANITY_WORDS[res.verdict]}"
    print(f"claim {res.claim} [{res.name}] ({mode_label(mode)}): {said}")
    for label, verdict in res.sanity.items():
        print(f"  sanity check {label}: {SANITY_WORDS[str(verdict)]}")
    for key, value in res.measured.items():
        print(f"  {key} = {fmt(value)}")
    print(f"wrote {res.figure} and {res.table}")
    return 0


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
