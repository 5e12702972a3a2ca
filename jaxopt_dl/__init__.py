"""jaxopt_dl: the deep-learning optimization canon as optax-compatible JAX transforms."""

__version__ = "0.1.0"

# --- core ---------------------------------------------------------------


# --- transforms and optimizers ------------------------------------------


# --- schedules ------------------------------------------------------------


# --- second order and diagnostics -----------------------------------------
from jaxopt_dl import diagnostics
from jaxopt_dl.diagnostics import gradient_check
from jaxopt_dl.second_order import OptimizeResult, least_squares, minimize


# --- training-side names ----------------------------------------------------

