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

from optax import MultiSteps, apply_if_finite, inject_hyperparams, masked, multi_transform

__all__ = ["MultiSteps", "apply_if_finite", "inject_hyperparams", "masked", "multi_transform"]
