"""Second-order methods and line search: minimize, least_squares, line searches.

After Bipin, "Deep Learning, Lecture 6 — Optimization" (second-order methods).

A solver is a descent direction (:mod:`.directions`) + a step-size search
(:mod:`.linesearch`), run by one ``lax.while_loop`` driver (:mod:`.driver`) that
returns an :class:`OptimizeResult`.
"""

from jaxopt_dl.second_order.directions import Direction, bfgs, gradient, lbfgs, newton
from jaxopt_dl.second_order.driver import OptimizeResult
from jaxopt_dl.second_order.linesearch import LineSearchResult, backtracking, zoom
from jaxopt_dl.second_order.minimization import minimize
from jaxopt_dl.second_order.nonlinear_least_squares import least_squares

__all__ = [
    "Direction",
    "LineSearchResult",
    "OptimizeResult",
    "backtracking",
    "bfgs",
    "gradient",
    "lbfgs",
    "least_squares",
    "minimize",
    "newton",
    "zoom",
]
