"""Second-order methods and line search: minimize, least_squares, line searches.

After Bipin, "Deep Learning, Lecture 6 — Optimization" (second-order methods).

A solver is a descent (:mod:`.directions`) + a step-size search (a line search,
:mod:`.linesearch`, or a trust region, :mod:`.trustregion`), run by one
``lax.while_loop`` driver (:mod:`.driver`) that returns an :class:`OptimizeResult`
with a :class:`Status`. Levenberg-Marquardt is the damped Newton step on ``J^T J``
with a trust region.
"""

from jaxopt_dl.second_order.directions import (
    Direction,
    bfgs,
    damped_newton_step,
    gradient,
    lbfgs,
    newton,
)
from jaxopt_dl.second_order.driver import OptimizeResult, Status
from jaxopt_dl.second_order.linesearch import LineSearchResult, backtracking, zoom
from jaxopt_dl.second_order.minimization import minimize
from jaxopt_dl.second_order.nonlinear_least_squares import least_squares
from jaxopt_dl.second_order.trustregion import TrustRegionResult, trust_region

__all__ = [
    "Direction",
    "LineSearchResult",
    "OptimizeResult",
    "Status",
    "TrustRegionResult",
    "backtracking",
    "bfgs",
    "damped_newton_step",
    "gradient",
    "lbfgs",
    "least_squares",
    "minimize",
    "newton",
    "trust_region",
    "zoom",
]
