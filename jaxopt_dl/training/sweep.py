"""Train many hyperparameter settings x seeds as ONE jitted, vmapped program."""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_dl._core import GradientTransformation, check_int
from jaxopt_dl.training.devices import over_host_devices
from jaxopt_dl.training.epoch import epoch_indices, scan_epoch
from jaxopt_dl.training.modules import check_linen
from jaxopt_dl.training.state import create_train_state
from jaxopt_dl.training.steps import LossFn, eval_step_fn

__all__ = ["SweepResult", "sweep"]


class SweepResult(NamedTuple):
    """Curves and final metrics of every ``(setting, seed)`` pair.

    Arrays are indexed ``[setting, seed, ...]``.

    Attributes:
      hyperparams: the settings, ``{name: (settings,) array}``.
      seeds: ``(seeds,)`` the seeds.
      step_loss: ``(settings, seeds, epochs * steps_per_epoch)`` training loss per step.
      train_loss: ``(settings, seeds, epochs)`` loss on the whole training set
        (``train=False``) after every epoch (``(settings, seeds, 1)``, after the last
        epoch, with ``eval_every_epoch=False``).
      train_accuracy: same for the accuracy (NaN unless the loss is the cross-entropy).
      val_loss: same as ``train_loss`` on ``val_data`` (``None`` without it).
      val_accuracy: same as ``train_accuracy`` on ``val_data`` (``None`` without it).
      final_loss: ``(settings, seeds)`` loss after the last epoch, on ``val_data``
        when given, else on the training set.
      final_accuracy: same for the accuracy.
    """

    hyperparams: dict
    seeds: np.ndarray
    step_loss: np.ndarray
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    val_loss: Optional[np.ndarray]
    val_accuracy: Optional[np.ndarray]
    final_loss: np.ndarray
    final_accuracy: np.ndarray


def _mean_metrics(state, data, loss):
    out = eval_step_fn(state, data, loss)
    correct = out.get("accuracy", jnp.nan)
    return out["loss_sum"] / out["weight"], correct / out["weight"]


def sweep(
    make_tx: Callable[..., GradientTransformation],
    hyperparams: Mapping[str, Any],
    seeds: Sequence[int],
    model: nn.Module,
    data: tuple,
    *,
    epochs: int,
    batch_size: int,
    val_data: Optional[tuple] = None,
    grad_accum_steps: int = 1,
    eval_every_epoch: bool = True,
    loss: Union[str, LossFn, None] = None,
) -> SweepResult:
    """Train ``model`` for every setting and seed in ONE ``jit(vmap(vmap(...)))`` program.

    Setting ``i`` uses the optimizer ``make_tx(**{k: v[i] for k, v in hyperparams})``
    (all arrays of ``hyperparams`` have the same length; build a grid with
    ``np.meshgrid`` first). Seed ``s`` initializes with ``jax.random.key(s)`` and shuffles
    exactly as ``fit(..., seed=s)`` does, so each ``(setting, seed)`` pair reproduces

    .. code-block:: python

        state = create_train_state(model, make_tx(**setting), jax.random.key(s), x[:1])
        fit(state, data, epochs=epochs, batch_size=batch_size, seed=s)

    The program vmaps over seeds and settings, runs init and a ``lax.scan`` over epochs
    (each a ``lax.scan`` over the precomputed shuffled batches), and evaluates after
    every epoch; hyperparameters are traced, so ``make_tx`` must accept arrays (every
    jaxopt_dl optimizer does; validation only applies to Python numbers). Non-finite
    steps are skipped (a diverging setting never stops the others).

    Args:
      make_tx: ``make_tx(**setting) -> GradientTransformation``.
      hyperparams: ``{name: 1-D array}``, one entry per setting.
      seeds: integer seeds.
      model: the Linen model (with or without a ``train`` argument).
      data: ``(x, y)`` training arrays.
      epochs: epochs per run.
      batch_size: examples per step (last partial batch dropped, as in ``fit``).
      val_data: optional ``(x, y)`` evaluated after every epoch.
      grad_accum_steps: micro-batches per step.
      eval_every_epoch: evaluate on the training set and ``val_data`` after every
        epoch; ``False`` evaluates only after the last one (the curves then have one
        entry), which saves a full pass over the training set per epoch and setting.
      loss: the loss trained and evaluated (see
        :func:`~jaxopt_dl.training.resolve_loss`; default the softmax cross-entropy).

    Returns:
      A :class:`SweepResult`.

    Example:
      >>> import numpy as np, jaxopt_dl as jdl
      >>> (x, y), _ = jdl.data.load_digits()
      >>> result = jdl.training.sweep(
      ...     lambda learning_rate: jdl.sgd(learning_rate), {"learning_rate": np.array([0.01, 0.1])},
      ...     seeds=[0], model=jdl.models.MLP(hidden=(16,)), data=(x[:256], y[:256]),
      ...     epochs=2, batch_size=64)
      >>> result.final_loss.shape
      (2, 1)

    References:
      Bergstra & Bengio 2012, "Random Search for Hyper-Parameter Optimization".
    """
    check_linen(model)
    check_int("epochs", epochs, 1)
    check_int("batch_size", batch_size, 1)
    check_int("grad_accum_steps", grad_accum_steps, 1)
    if not hyperparams:
        raise ValueError("hyperparams must name at least one hyperparameter, got {}")
    hp = {k: jnp.asarray(v) for k, v in hyperparams.items()}
    lengths = {k: v.shape[0] if v.ndim else None for k, v in hp.items()}
    if len(set(lengths.values())) != 1 or None in lengths.values():
        raise ValueError(f"hyperparams must be 1-D arrays of one length, got lengths {lengths}")
    seeds = np.asarray(seeds, np.int64)
    x, y = np.asarray(data[0]), np.asarray(data[1])
    # (seeds, epochs, steps, batch) indices, drawn exactly as fit draws them.
    indices = np.stack(
        [
            np.stack([epoch_indices(len(x), batch_size, int(s), e)[0] for e in range(epochs)])
            for s in seeds
        ]
    )
    keys = jnp.stack([jax.random.key_data(jax.random.key(int(s))) for s in seeds])
    val = None if val_data is None else (jnp.asarray(val_data[0]), jnp.asarray(val_data[1]))

    run = _compiled_run(make_tx, model, grad_accum_steps, val is not None, eval_every_epoch, loss)
    out = jax.device_get(run(hp, keys, jnp.asarray(x), jnp.asarray(y), indices, val))
    step_loss, train_loss, train_acc, val_loss, val_acc = out
    n_settings = step_loss.shape[0]
    step_loss = step_loss.reshape(n_settings, len(seeds), -1)
    final = (val_loss, val_acc) if val is not None else (train_loss, train_acc)
    return SweepResult(
        hyperparams={k: np.asarray(v) for k, v in hp.items()},
        seeds=seeds,
        step_loss=step_loss,
        train_loss=train_loss,
        train_accuracy=train_acc,
        val_loss=val_loss if val is not None else None,
        val_accuracy=val_acc if val is not None else None,
        final_loss=final[0][..., -1],
        final_accuracy=final[1][..., -1],
    )


@functools.lru_cache(maxsize=16)
def _compiled_run(make_tx, model, grad_accum_steps, has_val, eval_every_epoch, loss):
    """The jitted program, cached so a repeated sweep of the same model/make_tx reuses it.

    Each epoch is :func:`~jaxopt_dl.training.scan_epoch`, the program ``fit`` runs.
    """

    def one(setting, key_data, x, y, indices, val):
        key = jax.random.wrap_key_data(key_data)
        state = create_train_state(model, make_tx(**setting), key, x[:1])

        def metrics(state):
            train = _mean_metrics(state, (x, y), loss)
            return (*train, *(_mean_metrics(state, val, loss) if has_val else train))

        def epoch(state, indices):
            state, steps = scan_epoch(
                state, x, y, indices, grad_accum_steps=grad_accum_steps, loss=loss
            )
            losses = jnp.where(steps["finite"], steps["loss"], jnp.nan)
            return state, (losses, *(metrics(state) if eval_every_epoch else ()))

        state, curves = jax.lax.scan(epoch, state, indices)
        if not eval_every_epoch:
            curves = (curves[0], *(m[None] for m in metrics(state)))
        return curves

    over_seeds = jax.vmap(one, in_axes=(None, 0, None, None, 0, None))
    over_settings = jax.vmap(over_seeds, in_axes=(0, None, None, None, None, None))
    # Several host devices (XLA_FLAGS=--xla_force_host_platform_device_count=N): each
    # runs its share of the settings, so the sweep uses N cores.
    return jax.jit(over_host_devices(over_settings))
