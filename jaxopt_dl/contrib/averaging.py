"""Averages of the parameters, as torch's ``swa_utils.AveragedModel`` (SWA and EMA) and
Keras's ``use_ema`` keep them."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from jaxopt_dl import _core
from jaxopt_dl._core import GradientTransformation, GradientTransformationExtraArgs
from jaxopt_dl.contrib._common import _count, _need_params


class ParamAverageState(NamedTuple):
    """The state of :func:`param_averaging`.

    Attributes:
      inner_state: the wrapped optimizer's state.
      count: updates taken (int32).
      n_averaged: iterates averaged so far (torch's ``AveragedModel.n_averaged``).
      average: the averaged params (read with :func:`averaged_params`).
    """

    inner_state: Any
    count: jax.Array
    n_averaged: jax.Array
    average: Any


AVERAGING_MODES = ("ema", "swa")


def _inner_rate(arguments: dict):
    """The averaged optimizer's rate, read at ``state.inner_state``."""
    inner = _core.describe(arguments["optimizer"])
    if inner.rate is None:
        return None
    return lambda state: inner.rate(state.inner_state)


@_core.block(
    optimizer=True,
    checks={
        "mode": lambda name, value: _core.check_choice(name, value, AVERAGING_MODES),
        "decay": _core.check_decay,
        "optimizer": _core.check_transform,
    },
    rate=_inner_rate,
)
def param_averaging(
    optimizer: GradientTransformation,
    mode: str = "ema",
    decay: float = 0.999,
    start: int = 0,
    overwrite_every: Optional[int] = None,
) -> GradientTransformationExtraArgs:
    """Keep an average of the params after each step, as torch's ``AveragedModel`` does.

    After each update of ``optimizer`` the new params ``theta_t`` enter the average
    (from update number ``start + 1`` on):

    .. math::
        \\bar\\theta \\leftarrow \\theta_t \\text{ (first averaged step)},\\qquad
        \\text{ema: } \\bar\\theta \\leftarrow \\bar\\theta + (1-d)(\\theta_t - \\bar\\theta),
        \\qquad
        \\text{swa: } \\bar\\theta \\leftarrow
            \\bar\\theta + \\frac{\\theta_t - \\bar\\theta}{n + 1}

    with ``n`` the iterates averaged so far. ``mode="ema"`` is
    ``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))`` and Keras's
    ``use_ema=True, ema_momentum=decay``; ``mode="swa"`` is ``AveragedModel(model)``
    (the equal-weight average of Izmailov et al.), both with ``update_parameters``
    called after every ``optimizer.step()`` from step ``start + 1`` on. The first
    averaged step copies the params, as both torch and Keras do.
    ``overwrite_every=k`` is Keras's ``ema_overwrite_frequency``: every ``k``-th update
    sets the params to the average.

    Averages of batch-norm statistics are not kept (those are not params): after SWA,
    recompute them with a pass over the data, as ``torch.optim.swa_utils.update_bn``
    does.

    Args:
      optimizer: the optimizer whose iterates are averaged.
      mode: ``"ema"`` or ``"swa"``.
      decay: the EMA decay ``d`` in [0, 1) (torch's default 0.999; Keras's 0.99);
        unused by ``"swa"``.
      start: updates taken before averaging starts (torch users' ``swa_start``), a
        non-negative integer.
      overwrite_every: replace the params by the average every this many updates (a
        positive integer), or None to never replace them.

    Returns:
      A ``GradientTransformationExtraArgs`` whose ``update`` needs ``params``; extra
      keyword arguments go to ``optimizer``.

    Example:
      >>> import jax.numpy as jnp, jaxopt_dl as jdl
      >>> opt = jdl.param_averaging(jdl.sgd(1.0), mode="swa")
      >>> p = jnp.zeros(1)
      >>> s = opt.init(p)
      >>> for g in (-1.0, -1.0):
      ...     u, s = opt.update(jnp.full(1, g), s, p)
      ...     p = jdl.apply_updates(p, u)
      >>> p.tolist(), jdl.averaged_params(s).tolist()  # iterates 1 and 2, average 1.5
      ([2.0], [1.5])

    References:
      Izmailov et al. 2018, Averaging Weights Leads to Wider Optima and Better
      Generalization; Polyak & Juditsky 1992; ``torch.optim.swa_utils.AveragedModel``;
      Keras ``Optimizer(use_ema=True)``.
    """
    start = _count("start", start, 0)
    if overwrite_every is not None:
        overwrite_every = _count("overwrite_every", overwrite_every)
    inner = optax.with_extra_args_support(optimizer)

    def init_fn(params):
        return ParamAverageState(
            inner_state=inner.init(params),
            count=_core.zero_count(),
            n_averaged=_core.zero_count(),
            average=jax.tree.map(jnp.array, params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        _need_params(params, "param_averaging")
        updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
        new_params = optax.apply_updates(params, updates)
        count = _core.safe_increment(state.count)
        averaging = count > start
        n = state.n_averaged
        weight = 1 - decay if mode == "ema" else 1 / (n + 1.0)

        def step(a, p):
            averaged = jnp.where(n == 0, p, a + (p - a) * jnp.asarray(weight, a.dtype))
            return jnp.where(averaging, averaged, a)

        average = jax.tree.map(step, state.average, new_params)
        n_averaged = jnp.where(averaging, _core.safe_increment(n), n)
        if overwrite_every is not None:
            overwrite = averaging & (count % overwrite_every == 0)
            updates = jax.tree.map(
                lambda u, a, p: jnp.where(overwrite, a - p, u), updates, average, params
            )
        return updates, ParamAverageState(inner_state, count, n_averaged, average)

    return GradientTransformationExtraArgs(init_fn, update_fn)


def averaged_params(state: Any) -> Any:
    """The averaged params kept by :func:`param_averaging` (torch's ``swa_model.module``).

    Args:
      state: the state of :func:`param_averaging`, alone or inside a chain.

    Returns:
      The average, in the params' structure.
    """
    found = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, ParamAverageState))
        if isinstance(s, ParamAverageState)
    ]
    if len(found) != 1:
        raise ValueError(
            f"state must hold exactly one ParamAverageState, got state with {len(found)}"
        )
    return found[0].average
