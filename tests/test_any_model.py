"""Any Flax model trains: Linen modules with or without a train argument, batch norm,
dropout; NNX modules get one line saying what to do (and the advice works)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxopt_dl as jdl
from jaxopt_dl import training

(X, Y), (X_TEST, Y_TEST) = jdl.data.load_digits()
X, Y = X[:512], Y[:512]


class Plain(nn.Module):
    """The first model of most Flax users: no train argument."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(32)(x.reshape(x.shape[0], -1)))
        return nn.Dense(10)(x)


class PlainBatchNorm(nn.Module):
    """No train argument; batch norm always normalizes with the batch statistics."""

    @nn.compact
    def __call__(self, x):
        x = nn.BatchNorm(use_running_average=False)(nn.Dense(32)(x))
        return nn.Dense(10)(nn.relu(x))


class Deterministic(nn.Module):
    """Flax's own convention: a ``deterministic`` argument switching dropout off."""

    @nn.compact
    def __call__(self, x, deterministic: bool):
        x = nn.relu(nn.Dense(32)(x))
        x = nn.Dropout(0.5, deterministic=deterministic)(x)
        return nn.Dense(10)(x)


class Training(nn.Module):
    """Keras's convention: ``training``, with batch norm and dropout."""

    @nn.compact
    def __call__(self, x, training: bool = False):
        x = nn.Dense(32)(x)
        x = nn.BatchNorm(use_running_average=not training, momentum=0.5)(x)
        x = nn.Dropout(0.2, deterministic=not training)(nn.relu(x))
        return nn.Dense(10)(x)


def state_of(model, lr=1e-2):
    return training.create_train_state(model, jdl.adam(lr), jax.random.key(0), X[:1])


@pytest.mark.parametrize("model", [Plain(), PlainBatchNorm(), Deterministic(), Training()])
def test_fit_trains_a_linen_module_whatever_its_mode_argument(model):
    state = state_of(model)
    _, history = training.fit(
        state, (X, Y), (X_TEST, Y_TEST), epochs=3, batch_size=64, progress=False
    )
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.val_accuracy[-1] > 0.8


def test_a_module_without_train_is_called_exactly_as_its_own_apply():
    state = state_of(Plain())
    expected = Plain().apply({"params": state.params}, X[:8])
    np.testing.assert_array_equal(training.predict(state, X[:8]), expected)
    # the params are those of Plain().init with the same key: "params" alone decides them
    init_key, _ = jax.random.split(jax.random.key(0))
    chex_params = Plain().init(init_key, X[:1])["params"]
    jax.tree.map(np.testing.assert_array_equal, state.params, chex_params)


def test_the_mode_argument_switches_dropout_and_batch_norm():
    state = state_of(Training())
    assert training.model_apply(Training()).mode_argument == "training"
    assert training.model_apply(Deterministic()).mode_argument == "deterministic"
    assert training.model_apply(Plain()).mode_argument is None
    # evaluation is deterministic and uses the running averages (unchanged at init)
    a = training.predict(state, X[:16])
    np.testing.assert_array_equal(a, training.predict(state, X[:16]))
    stats = jax.tree.map(np.asarray, state.batch_stats)
    new, _ = training.train_step(state, (X[:64], Y[:64]))
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), new.batch_stats, stats)
    assert all(jax.tree.leaves(moved))  # a training step moved the running averages
    # dropout is on in training: the same batch under two step keys gives two gradients
    g = [
        jax.grad(
            lambda p, k=k: jnp.sum(
                state.apply_fn(
                    {"params": p, "batch_stats": state.batch_stats},
                    X[:8],
                    train=True,
                    mutable=["batch_stats"],
                    rngs={"dropout": jax.random.key(k)},
                )[0]
            )
        )(state.params)
        for k in (1, 2)
    ]
    assert not np.array_equal(g[0]["Dense_0"]["kernel"], g[1]["Dense_0"]["kernel"])


def test_evaluating_a_batch_statistics_module_leaves_its_running_averages_alone():
    state = state_of(PlainBatchNorm())
    before = jax.tree.map(np.asarray, state.batch_stats)
    training.evaluate(state, (X_TEST, Y_TEST))
    logits = training.predict(state, X[:32])
    # it normalizes with the batch statistics, as the module itself does
    expected, _ = PlainBatchNorm().apply(state.variables(), X[:32], mutable=["batch_stats"])
    np.testing.assert_allclose(logits, expected, rtol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, state.batch_stats, before)


def test_sweep_lr_find_and_diagnose_take_a_module_without_train():
    model = Plain()
    result = training.sweep(
        lambda learning_rate: jdl.adam(learning_rate),
        {"learning_rate": np.array([1e-3, 1e-2])},
        [0],
        model,
        (X, Y),
        epochs=2,
        batch_size=64,
    )
    assert result.final_accuracy[1, 0] > 0.8
    found = jdl.lr_find(model, (X, Y), jdl.adam, num=6, steps=20)
    assert np.isfinite(found.final_loss).any()
    report = jdl.diagnose(model, (X, Y), jdl.adam(1e-3), overfit_steps=50, train_steps=40)
    assert report["learns"].status == "pass"
    assert report["gradient_check"].status == "pass"


class NNXModel(nnx.Module):
    def __init__(self, din, dout, *, rngs):
        self.hidden = nnx.Linear(din, 32, rngs=rngs)
        self.out = nnx.Linear(32, dout, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))


def test_an_nnx_module_raises_one_line_that_says_what_to_do():
    model = NNXModel(64, 10, rngs=nnx.Rngs(0))
    for run in (
        lambda: state_of(model),
        lambda: jdl.lr_find(model, (X, Y), jdl.adam, num=3, steps=2),
        lambda: jdl.diagnose(model, (X, Y), jdl.adam(1e-3)),
        lambda: training.sweep(
            lambda learning_rate: jdl.adam(learning_rate),
            {"learning_rate": np.array([1e-3])},
            [0],
            model,
            (X, Y),
            epochs=1,
            batch_size=64,
        ),
    ):
        with pytest.raises(TypeError) as error:
            run()
        message = str(error.value)
        assert "\n" not in message
        assert "NNX module NNXModel" in message and "flax.nnx.bridge.to_linen(NNXModel" in message


def test_the_advice_for_nnx_works_fit_trains_the_bridged_module():
    model = nnx.bridge.to_linen(NNXModel, 64, 10)
    state = state_of(model)
    _, history = training.fit(
        state, (X, Y), (X_TEST, Y_TEST), epochs=3, batch_size=64, progress=False
    )
    assert history.val_accuracy[-1] > 0.8
