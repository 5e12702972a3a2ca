"""jaxopt_dl: the deep-learning optimization canon as optax-compatible JAX transforms."""

__version__ = "0.1.0"

# --- core ---------------------------------------------------------------


# --- transforms and optimizers ------------------------------------------


# --- schedules ------------------------------------------------------------


# --- second order and diagnostics -----------------------------------------


# --- training-side names ----------------------------------------------------
from jaxopt_dl import data, initializers, models

