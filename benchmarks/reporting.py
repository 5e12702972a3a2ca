"""What the MNIST-1D table and the optimizer set share: intervals and generated docs sections.

Intervals: a percentile bootstrap for means and medians over seeds (fixed resampling
seed, so a rerun writes the same numbers) and Wilson's score interval for fractions.
Docs: a script's Markdown replaces the part of a page between two marker comments, so
the page's numbers always come from a results file and are never typed.
"""

from __future__ import annotations

import math
import os
import re
from typing import Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def bootstrap_interval(
    values, statistic: Callable = np.mean, level: float = 0.95, draws: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over the entries of ``values``.

    Args:
      values: 1-D sample (one entry per seed); ``inf`` entries are allowed (a run that
        never reached a target) and stay ``inf`` in the resampled statistic.
      statistic: reduces a ``(draws, n)`` array along axis 1 (``np.mean``, ``np.median``).
      level: coverage of the interval.
      draws: bootstrap resamples.
      seed: seed of the resampling.

    Returns:
      ``(low, high)``.
    """
    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    samples = values[rng.integers(0, len(values), size=(draws, len(values)))]
    stats = statistic(samples, axis=1)
    alpha = (1.0 - level) / 2.0
    # order statistics, no interpolation: an interval reaching a failure is ``inf``, not NaN
    low, high = np.quantile(stats, [alpha, 1.0 - alpha], method="inverted_cdf")
    return float(low), float(high)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval of a binomial fraction ``successes / n``.

    Args:
      successes: number of successes.
      n: number of trials (> 0).
      level: coverage (0.95 uses z = 1.96).

    Returns:
      ``(low, high)`` within [0, 1].
    """
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def replace_section(path: str, name: str, markdown: str) -> None:
    """Write ``markdown`` between ``<!-- name:begin -->`` and ``<!-- name:end -->`` of a page.

    The markers are added at the end of the page the first time.

    Args:
      path: the Markdown page.
      name: the section's marker name.
      markdown: the generated text.
    """
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    with open(path) as f:
        text = f.read()
    block = f"{begin}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def environment() -> dict:
    """The machine and versions a result was measured with.

    Returns:
      A JSON-able dict.
    """
    import jax

    device = jax.devices()[0]
    return {
        "jax": jax.__version__,
        "device": f"{device.platform} ({device.device_kind})",
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
    }
