"""reduce_on_plateau against torch.optim.lr_scheduler.ReduceLROnPlateau."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxopt_dl as jdl

BASE_LR = 0.1


def torch_plateau_lrs(losses, **kwargs):
    """The lr torch uses after each ``scheduler.step(loss)``."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=BASE_LR)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **kwargs)
    lrs = []
    for loss in losses:
        optimizer.step()
        scheduler.step(float(loss))
        lrs.append(optimizer.param_groups[0]["lr"])
    return np.asarray(lrs)


def our_scales(losses, **kwargs):
    """The scale after each ``update(..., value=loss)``, run as one jitted scan."""
    tx = jdl.reduce_on_plateau(**kwargs)
    params = jnp.zeros(3)

    def step(state, loss):
        _, state = tx.update(params, state, params, value=loss)
        return state, state.scale

    _, scales = jax.jit(lambda v: jax.lax.scan(step, tx.init(params), v))(jnp.asarray(losses))
    return np.asarray(scales)


def _noisy_decreasing(seed, n=300):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    # Decreasing, then flat with noise: plateaus appear once the noise dominates.
    return (1.0 + 2.0 * np.exp(-t / 40) + 0.02 * rng.standard_normal(n)).astype(np.float32)


def _negative_plateau(n=200):
    t = np.arange(n)
    # Improves for 40 steps, then stays exactly flat at -2 (a log-likelihood at its best).
    return np.where(t < 40, -1.0 - t / 40.0, -2.0).astype(np.float32)


CONFIGS = [
    dict(factor=0.1, patience=10),
    dict(factor=0.5, patience=3, cooldown=2),
    dict(factor=0.5, patience=0, cooldown=0, min_scale=0.05),
    dict(factor=0.3, patience=5, cooldown=4, rtol=1e-2),
    dict(factor=0.7, patience=2, cooldown=1, rtol=0.0, atol=0.01),
]


def _torch_kwargs(config, mode="min"):
    return dict(
        mode=mode,
        factor=config["factor"],
        patience=config["patience"],
        cooldown=config.get("cooldown", 0),
        threshold=config.get("atol", 0.0)
        if config.get("rtol", 1e-4) == 0
        else config.get("rtol", 1e-4),
        threshold_mode="abs" if config.get("rtol", 1e-4) == 0 else "rel",
        min_lr=BASE_LR * config.get("min_scale", 0.0),
        eps=0.0,  # torch skips reductions smaller than eps (1e-8); we have no such floor
    )


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_positive_losses_follow_torch(config, seed):
    losses = _noisy_decreasing(seed)
    reference = torch_plateau_lrs(losses, **_torch_kwargs(config))
    assert reference[-1] < BASE_LR  # the sequence does trigger reductions
    np.testing.assert_allclose(BASE_LR * our_scales(losses, **config), reference, rtol=1e-6)


@pytest.mark.parametrize("config", CONFIGS)
def test_negative_plateau_reduces_like_torch_on_the_negated_loss(config):
    # torch's threshold_mode="rel" in mode "min" tests v < best (1 - rtol), which for a
    # negative best accepts a slightly worse value as an improvement; mode "max" on -v tests
    # -v > -best (1 + rtol), i.e. v < best - rtol |best|: the correct rule, ours.
    losses = _negative_plateau()
    reference = torch_plateau_lrs(-losses, **_torch_kwargs(config, mode="max"))
    ours = BASE_LR * our_scales(losses, **config)
    np.testing.assert_allclose(ours, reference, rtol=1e-6)
    assert ours[-1] < BASE_LR


def test_negative_plateau_fools_relative_threshold_of_torch_min_mode_but_not_ours():
    losses = _negative_plateau()
    buggy = torch_plateau_lrs(losses, mode="min", threshold=1e-4, patience=5, eps=0.0)
    assert np.all(buggy == BASE_LR)  # never reduces: the known bug
    scales = our_scales(losses, patience=5)
    # Improvements up to index 40 (the first -2), then the 6th bad evaluation (patience + 1)
    # reduces.
    np.testing.assert_allclose(scales[:46], 1.0)
    np.testing.assert_allclose(scales[46], 0.1, rtol=1e-6)


def test_accumulation_averages_values_before_each_evaluation():
    k, config = 4, dict(factor=0.5, patience=2, cooldown=1)
    values = _noisy_decreasing(3, n=400)
    chunk_means = values.reshape(-1, k).mean(axis=1)
    reference = torch_plateau_lrs(chunk_means, **_torch_kwargs(config))
    scales = our_scales(values, accumulation_size=k, **config)
    np.testing.assert_allclose(BASE_LR * scales[k - 1 :: k], reference, rtol=1e-6)
    # The scale only changes at the end of a window.
    changes = np.nonzero(np.diff(scales))[0] + 1
    assert len(changes) > 0 and np.all(changes % k == k - 1)


def test_updates_are_scaled_and_state_exposes_fields_in_an_optax_chain():
    tx = optax.chain(optax.sgd(BASE_LR), jdl.reduce_on_plateau(factor=0.5, patience=1))
    params = {"w": jnp.ones(3), "b": jnp.ones((), jnp.bfloat16)}
    state = tx.init(params)
    step = jax.jit(lambda g, s, loss: tx.update(g, s, params, value=loss))
    grads = jax.tree.map(jnp.ones_like, params)
    for loss in (3.0, 2.0, 2.0, 2.0):
        updates, state = step(grads, state, loss)
    plateau_state = state[1]
    assert isinstance(plateau_state, jdl.ReduceLROnPlateauState)
    chex.assert_trees_all_close(plateau_state.scale, 0.5)
    chex.assert_trees_all_close(plateau_state.best_value, 2.0)
    assert int(plateau_state.plateau_count) == 0 and int(plateau_state.count) == 0
    chex.assert_trees_all_close(updates["w"], -BASE_LR * 0.5 * jnp.ones(3))
    assert updates["b"].dtype == jnp.bfloat16


def test_traced_factor_under_vmap():
    losses = jnp.asarray(_negative_plateau(100))
    params = jnp.zeros(2)

    def final_scale(factor):
        tx = jdl.reduce_on_plateau(factor=factor, patience=3)

        def step(state, loss):
            _, state = tx.update(params, state, params, value=loss)
            return state, None

        return jax.lax.scan(step, tx.init(params), losses)[0].scale

    batched = jax.jit(jax.vmap(final_scale))(jnp.array([0.1, 0.5]))
    chex.assert_trees_all_close(batched, jnp.stack([final_scale(0.1), final_scale(0.5)]), rtol=1e-6)
    assert float(batched[0]) < float(batched[1]) < 1.0


BAD = [
    (dict(factor=0.0), "factor", "0.0"),
    (dict(factor=1.0), "factor", "1.0"),
    (dict(factor=-0.5), "factor", "-0.5"),
    (dict(patience=-1), "patience", "-1"),
    (dict(rtol=-1e-3), "rtol", "-0.001"),
    (dict(rtol=1.5), "rtol", "1.5"),
    (dict(atol=-0.1), "atol", "-0.1"),
    (dict(cooldown=-2), "cooldown", "-2"),
    (dict(accumulation_size=0), "accumulation_size", "0"),
    (dict(min_scale=-0.1), "min_scale", "-0.1"),
]


@pytest.mark.parametrize("kwargs,name,value", BAD, ids=[f"{n}={v}" for _, n, v in BAD])
def test_bad_input(kwargs, name, value):
    with pytest.raises(ValueError, match=rf"{name}.*{value}"):
        jdl.reduce_on_plateau(**kwargs)
