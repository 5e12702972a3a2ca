"""Wrappers re-exported from optax: they take any GradientTransformation, ours included.

jaxopt_dl's transforms use optax's own protocol type, so optax's wrappers compose with
them unchanged; the test suite checks each one with jaxopt_dl optimizers inside.

* ``apply_if_finite(inner, max_consecutive_errors)`` -- skip a step whose gradient has a
  NaN/Inf: params and the inner state stay bit-identical; state fields
  ``notfinite_count, last_finite, total_notfinite, inner_state``.
* ``masked(inner, mask)`` -- apply ``inner`` only where ``mask`` is True.
* ``multi_transform(transforms, param_labels)`` -- a different optimizer per label.
* ``MultiSteps(opt, every_k_schedule)`` -- gradient accumulation over k micro-batches.
* ``inject_hyperparams(factory)(**hparams)`` -- hyperparameters in the state, changeable
  between steps without recompiling.
"""

from typing import Any

import numpy as np
import optax
from optax import apply_if_finite, inject_hyperparams, masked, multi_transform


class MultiSteps(optax.MultiSteps):
    """``optax.MultiSteps`` with ``every_k_schedule`` checked on entry.

    optax takes any non-int for a schedule, so ``every_k_schedule=2.0`` fails later,
    inside ``update``, with "'float' object is not callable"; here a number that is not
    a positive integer raises ``ValueError`` naming ``every_k_schedule`` at once.

    Example:
      >>> import jaxopt_dl as jdl
      >>> tx = jdl.MultiSteps(jdl.adam(1e-3), every_k_schedule=4).gradient_transformation()
    """

    def __init__(self, opt: optax.GradientTransformation, every_k_schedule: Any, *args, **kwargs):
        if not callable(every_k_schedule):
            whole = isinstance(every_k_schedule, (int, np.integer)) and not isinstance(
                every_k_schedule, bool
            )
            if not whole or every_k_schedule < 1:
                raise ValueError(
                    "every_k_schedule must be a positive int or a schedule, got "
                    f"every_k_schedule={every_k_schedule!r}"
                )
        super().__init__(opt, every_k_schedule, *args, **kwargs)


__all__ = ["MultiSteps", "apply_if_finite", "inject_hyperparams", "masked", "multi_transform"]
