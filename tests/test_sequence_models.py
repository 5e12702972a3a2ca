"""The 1-D models CNN1D and GRU: equal to torch's layers with the same weights, and they learn
MNIST-1D."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxopt_dl as jdl
from jaxopt_dl.models import CNN1D, GRU


def _t(a):
    return torch.tensor(np.asarray(a, np.float64))


def test_cnn1d_equals_torch_conv1d_stack_of_the_mnist1d_benchmark():
    model = CNN1D()
    x = jax.random.normal(jax.random.key(1), (5, 40))
    params = model.init(jax.random.key(0), x, train=False)["params"]
    ours = np.asarray(model.apply({"params": params}, x, train=False), np.float64)
    # Greydanus' ConvBase: three Conv1d (25 channels, widths 5/3/3, stride 2, padding 1),
    # ReLU, flatten (channels first), one Linear.
    h = _t(x)[:, None, :]
    for i in range(3):
        layer = params[f"conv_{i}"]
        weight = _t(layer["kernel"]).permute(2, 1, 0)  # (width, in, out) -> (out, in, width)
        h = torch.relu(torch.nn.functional.conv1d(h, weight, _t(layer["bias"]), 2, 1))
    assert tuple(h.shape) == (5, 25, 5)
    flat = h.permute(0, 2, 1).reshape(5, -1)  # ours flattens positions first
    logits = flat @ _t(params["logits"]["kernel"]) + _t(params["logits"]["bias"])
    np.testing.assert_allclose(ours, logits.numpy(), rtol=1e-4, atol=1e-5)


def _torch_gru(params, hidden, bidirectional):
    gru = torch.nn.GRU(1, hidden, batch_first=True, bidirectional=bidirectional).double()
    names = ["forward_cell"] + (["backward_cell"] if bidirectional else [])
    with torch.no_grad():
        for cell, suffix in zip(names, ["", "_reverse"]):
            p = params[cell]
            w_ih = torch.cat([_t(p[g]["kernel"]).T for g in ("ir", "iz", "in")])
            w_hh = torch.cat([_t(p[g]["kernel"]).T for g in ("hr", "hz", "hn")])
            b_ih = torch.cat([_t(p[g]["bias"]) for g in ("ir", "iz", "in")])
            b_hh = torch.cat([torch.zeros(2 * hidden, dtype=torch.float64), _t(p["hn"]["bias"])])
            for name, value in [
                ("weight_ih", w_ih),
                ("weight_hh", w_hh),
                ("bias_ih", b_ih),
                ("bias_hh", b_hh),
            ]:
                getattr(gru, f"{name}_l0{suffix}").copy_(value)
    return gru


@pytest.mark.parametrize("bidirectional,readout", [(True, "all"), (False, "last"), (True, "last")])
def test_gru_equals_torch_gru_with_the_same_weights(bidirectional, readout):
    hidden = 6
    model = GRU(hidden=hidden, bidirectional=bidirectional, readout=readout)
    x = jax.random.normal(jax.random.key(1), (4, 40))
    params = model.init(jax.random.key(0), x, train=False)["params"]
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(2), a.shape), params)
    ours = np.asarray(model.apply({"params": params}, x, train=False), np.float64)
    output, h_n = _torch_gru(params, hidden, bidirectional)(_t(x)[..., None])
    if readout == "all":
        features = output.reshape(4, -1)  # (batch, time * directions * hidden)
    else:
        features = torch.cat(list(h_n), dim=-1)  # final state of each direction
    logits = features @ _t(params["logits"]["kernel"]) + _t(params["logits"]["bias"])
    np.testing.assert_allclose(ours, logits.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_kernel_init_reaches_every_kernel():
    x = jnp.zeros((2, 40))
    for model in (
        CNN1D(kernel_init=jdl.initializers.zeros),
        GRU(kernel_init=jdl.initializers.zeros),
    ):
        params = model.init(jax.random.key(0), x, train=False)["params"]
        kernels = {
            "/".join(str(k.key) for k in path): leaf
            for path, leaf in jax.tree_util.tree_leaves_with_path(params)
            if path[-1].key == "kernel" and path[-2].key not in ("hr", "hz", "hn")
        }
        assert kernels and all(float(jnp.abs(k).max()) == 0.0 for k in kernels.values())


@pytest.mark.parametrize(
    "model,error,needle",
    [
        (CNN1D(kernel_sizes=(5, 3)), ValueError, "kernel_sizes"),
        (GRU(readout="mean"), ValueError, "readout"),
        (CNN1D(dropout_rate=1.5), ValueError, "dropout_rate"),
    ],
)
def test_bad_configurations_are_refused_by_name(model, error, needle):
    with pytest.raises(error, match=needle):
        model.init(jax.random.key(0), jnp.zeros((2, 40)), train=False)


def test_batchnorm_and_dropout_in_cnn1d_follow_train():
    model = CNN1D(use_batchnorm=True, dropout_rate=0.5)
    x = jax.random.normal(jax.random.key(1), (8, 40))
    variables = model.init(jax.random.key(0), x, train=False)
    assert set(variables) == {"params", "batch_stats"}
    a = model.apply(variables, x, train=False)
    np.testing.assert_array_equal(a, model.apply(variables, x, train=False))
    b, updates = model.apply(
        variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(3)}
    )
    assert not np.allclose(a, b)
    assert not np.allclose(updates["batch_stats"]["bn_0"]["mean"], 0.0)


@pytest.fixture(scope="module")
def mnist1d():
    return jdl.data.load_mnist1d()


@pytest.mark.parametrize("model", [CNN1D(), GRU()], ids=["cnn1d", "gru"])
def test_models_learn_mnist1d_in_a_few_steps(model, mnist1d):
    (x, y), _ = mnist1d
    x, y = x[:512], y[:512]
    state = jdl.training.create_train_state(model, optax.adam(1e-2), jax.random.key(0), x[:1])
    before = jdl.training.evaluate(state, (x, y))[0]
    for step in range(30):
        idx = slice((step % 4) * 128, (step % 4 + 1) * 128)
        state, _ = jdl.training.train_step(state, (x[idx], y[idx]))
    after = jdl.training.evaluate(state, (x, y))[0]
    assert after < 0.85 * before, (before, after)
