"""Models: shapes, batch-norm state, dropout, initializer choice, RNN recurrence."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxopt_dl import initializers, models

KEY = jax.random.key(0)
X_FLAT = jax.random.normal(jax.random.key(1), (6, 64))

# (id, model, input) — tiny sizes; every model gets flat digits-like input.
CASES = [
    ("mlp", models.MLP(hidden=(8, 6)), X_FLAT),
    ("mlp_bn_dropout", models.MLP(hidden=(8,), use_batchnorm=True, dropout_rate=0.3), X_FLAT),
    ("cnn", models.CNN(features=(4, 6), dense=8), X_FLAT),
    ("cnn_bn", models.CNN(features=(4,), dense=8, use_batchnorm=True), X_FLAT),
    ("resnet", models.ResNet(stage_sizes=(1, 1), width=4), X_FLAT),
    ("resnet_preact", models.ResNet(stage_sizes=(2, 1), width=4, preactivation=True), X_FLAT),
    ("resnet_nobn", models.ResNet(stage_sizes=(1,), width=4, use_batchnorm=False), X_FLAT),
    ("rnn", models.RNN(hidden=5, num_classes=3), X_FLAT.reshape(6, 16, 4)),
]
IDS = [c[0] for c in CASES]


def _init(model, x):
    return model.init(KEY, x, train=False)


@pytest.mark.parametrize("name,model,x", CASES, ids=IDS)
def test_shapes_collections_and_determinism(name, model, x):
    variables = _init(model, x)
    has_bn = getattr(model, "use_batchnorm", False)
    assert set(variables) == ({"params", "batch_stats"} if has_bn else {"params"})
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    out = apply(variables, x)
    chex.assert_shape(out, (x.shape[0], model.num_classes))
    chex.assert_tree_all_finite(out)
    chex.assert_trees_all_equal(out, apply(variables, x))
    if has_bn:  # train=False uses the running averages: examples don't see each other.
        chex.assert_trees_all_close(apply(variables, x[:2]), out[:2], atol=1e-5)


@pytest.mark.parametrize(
    "model",
    [models.CNN(features=(4,), dense=8), models.ResNet(stage_sizes=(1,), width=4)],
    ids=["cnn", "resnet"],
)
def test_image_models_accept_flat_and_image_input(model):
    variables = _init(model, X_FLAT)
    flat = model.apply(variables, X_FLAT, train=False)
    images = model.apply(variables, X_FLAT.reshape(6, 8, 8, 1), train=False)
    no_channel = model.apply(variables, X_FLAT.reshape(6, 8, 8), train=False)
    chex.assert_trees_all_equal(flat, images, no_channel)


def _bn_reference(h, gamma, beta, mean, var, eps):
    return gamma * (h - mean) / np.sqrt(var + eps) + beta


def test_mlp_batchnorm_matches_numpy_and_updates_running_averages():
    model = models.MLP(hidden=(5,), num_classes=3, use_batchnorm=True, bn_momentum=0.8)
    x = np.asarray(jax.random.normal(jax.random.key(2), (16, 7)) * 3 + 1, np.float64)
    variables = _init(model, x)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    assert "bias" not in p["dense_0"]  # BN's beta replaces the bias
    gamma, beta = p["bn_0"]["scale"], p["bn_0"]["bias"]
    h = x @ p["dense_0"]["kernel"]
    mu_b, var_b = h.mean(0), h.var(0)  # biased batch variance, as in Ioffe & Szegedy

    step = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
    logits, updates = step(variables, x.astype(np.float32))
    hidden = np.maximum(_bn_reference(h, gamma, beta, mu_b, var_b, 1e-5), 0)
    want = hidden @ p["logits"]["kernel"] + p["logits"]["bias"]
    np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-4, atol=1e-4)

    # ra <- momentum * ra + (1 - momentum) * batch_stat, from ra = (0, 1).
    stats = updates["batch_stats"]["bn_0"]
    np.testing.assert_allclose(stats["mean"], 0.8 * 0 + 0.2 * mu_b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["var"], 0.8 * 1 + 0.2 * var_b, rtol=1e-5)
    _, updates2 = step({**variables, **updates}, x.astype(np.float32))
    np.testing.assert_allclose(
        updates2["batch_stats"]["bn_0"]["mean"], 0.8 * stats["mean"] + 0.2 * mu_b, rtol=1e-5
    )

    # train=False: the running averages replace the batch statistics.
    eval_logits = model.apply({**variables, **updates}, x.astype(np.float32), train=False)
    hidden = np.maximum(_bn_reference(h, gamma, beta, stats["mean"], stats["var"], 1e-5), 0)
    want = hidden @ p["logits"]["kernel"] + p["logits"]["bias"]
    np.testing.assert_allclose(np.asarray(eval_logits), want, rtol=1e-4, atol=1e-4)


def test_default_batchnorm_momentum_and_eps():
    model = models.ResNet(stage_sizes=(1,), width=4)
    assert (model.bn_momentum, model.bn_epsilon) == (0.9, 1e-5)
    variables = _init(model, X_FLAT)
    _, updates = model.apply(variables, X_FLAT, train=True, mutable=["batch_stats"])
    # Every running average (mean and var, every BN layer) moved away from its start.
    moved = jax.tree.map(
        lambda a, b: bool(jnp.any(a != b)), updates["batch_stats"], variables["batch_stats"]
    )
    assert all(jax.tree.leaves(moved))


def test_dropout_only_in_training_with_rng():
    kwargs = dict(hidden=(32,), num_classes=4)
    model = models.MLP(dropout_rate=0.5, **kwargs)
    plain = models.MLP(**kwargs)
    variables = _init(model, X_FLAT)
    train = jax.jit(lambda v, x, k: model.apply(v, x, train=True, rngs={"dropout": k}))
    evaluation = model.apply(variables, X_FLAT, train=False)
    chex.assert_trees_all_equal(evaluation, plain.apply(variables, X_FLAT, train=False))
    a = train(variables, X_FLAT, jax.random.key(1))
    b = train(variables, X_FLAT, jax.random.key(2))
    assert not np.allclose(a, evaluation) and not np.allclose(a, b)
    chex.assert_trees_all_equal(a, train(variables, X_FLAT, jax.random.key(1)))
    with pytest.raises(Exception, match="dropout"):
        model.apply(variables, X_FLAT, train=True)


def test_dropout_scales_kept_units():
    # Inverted dropout: kept activations are divided by (1 - rate); compare the layer
    # input (sown) with what the output layer receives, reconstructed from the logits.
    rate = 0.25
    model = models.MLP(
        hidden=(64,),
        num_classes=64,
        dropout_rate=rate,
        kernel_init=initializers.orthogonal(),
        output_scale=1.0,  # an orthogonal logits kernel: its transpose inverts it
    )
    variables = _init(model, X_FLAT)
    logits, state = model.apply(
        variables, X_FLAT, train=True, rngs={"dropout": KEY}, mutable=["intermediates"]
    )
    hidden = state["intermediates"]["dense_0_out"][0]
    out = variables["params"]["logits"]
    received = (logits - out["bias"]) @ out["kernel"].T  # orthogonal kernel: exact inverse
    kept = np.abs(np.asarray(received)) > 1e-4
    np.testing.assert_allclose(
        np.asarray(received)[kept], np.asarray(hidden)[kept] / (1 - rate), rtol=1e-3, atol=1e-4
    )
    active = np.asarray(hidden) > 1e-4
    assert 0.6 < kept[active].mean() < 0.9


@pytest.mark.parametrize(
    "model,x,k",
    [
        (models.MLP(hidden=(16, 8), num_classes=4, kernel_init=initializers.sparse(3)), X_FLAT, 3),
        (models.CNN(features=(4,), dense=8, kernel_init=initializers.sparse(5)), X_FLAT, 5),
        (models.ResNet(stage_sizes=(1,), width=4, kernel_init=initializers.sparse(2)), X_FLAT, 2),
    ],
    ids=["mlp", "cnn", "resnet"],
)
def test_kernel_init_is_honoured(model, x, k):
    params = _init(model, x)["params"]
    kernels = [
        leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        if jax.tree_util.keystr(path).endswith("['kernel']")
    ]
    assert len(kernels) >= 3
    for kernel in kernels:
        per_unit = (np.asarray(kernel).reshape(-1, kernel.shape[-1]) != 0).sum(axis=0)
        assert (per_unit == k).all()


def test_output_bias_from_marginals():
    freqs = np.array([0.5, 0.3, 0.2])
    model = models.MLP(
        hidden=(4,),
        num_classes=3,
        output_bias_init=initializers.bias_from_marginals(freqs),
        kernel_init=initializers.zeros,
    )
    variables = _init(model, X_FLAT)
    probs = jax.nn.softmax(model.apply(variables, X_FLAT, train=False))
    np.testing.assert_allclose(np.asarray(probs), np.tile(freqs, (6, 1)), rtol=1e-5)


# Number of sown activations: one per hidden layer / residual block, plus the extras.
SOWN = {
    "mlp": 3,
    "mlp_bn_dropout": 2,
    "cnn": 4,
    "cnn_bn": 3,
    "resnet": 5,
    "resnet_preact": 6,
    "resnet_nobn": 4,
    "rnn": 2,
}


@pytest.mark.parametrize("name,model,x", CASES, ids=IDS)
def test_intermediates_are_sown_per_layer(name, model, x):
    variables = _init(model, x)
    logits, state = model.apply(
        variables, x, train=False, mutable=["intermediates"], rngs={"dropout": KEY}
    )
    sown = state["intermediates"]
    chex.assert_trees_all_equal(sown["logits_out"][0], logits)
    assert len(jax.tree.leaves(sown)) == SOWN[name]
    for leaf in jax.tree.leaves(sown):
        assert leaf.shape[0] == x.shape[0]


def test_mlp_sows_named_hidden_layers():
    model = models.MLP(hidden=(8, 6))
    _, state = model.apply(_init(model, X_FLAT), X_FLAT, mutable=["intermediates"])
    assert set(state["intermediates"]) == {"dense_0_out", "dense_1_out", "logits_out"}
    chex.assert_shape(state["intermediates"]["dense_1_out"][0], (6, 6))


def _rnn_numpy(params, x, return_sequence):
    """Line-by-line: h_t = tanh(h_{t-1} W + x_t U + b); logits = h V + c."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    u, w, b = p["input_kernel"], p["recurrent_kernel"], p["bias"]
    h = np.zeros((x.shape[0], w.shape[0]))
    states = []
    for t in range(x.shape[1]):
        h = np.tanh(h @ w + x[:, t] @ u + b)
        states.append(h)
    out = np.stack(states, axis=1) if return_sequence else h
    return out @ p["logits"]["kernel"] + p["logits"]["bias"]


@pytest.mark.parametrize("return_sequence", [False, True])
def test_rnn_matches_numpy_loop(return_sequence):
    model = models.RNN(
        hidden=6,
        num_classes=3,
        return_sequence=return_sequence,
        recurrent_init=initializers.glorot_normal(),
    )
    x = np.asarray(jax.random.normal(jax.random.key(3), (4, 9, 2)), np.float64)
    variables = _init(model, x.astype(np.float32))
    out = jax.jit(lambda v, x: model.apply(v, x))(variables, x.astype(np.float32))
    want = _rnn_numpy(variables["params"], x, return_sequence)
    chex.assert_shape(out, want.shape)
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-4, atol=1e-5)


def test_rnn_defaults_and_scalar_sequence_input():
    model = models.RNN(hidden=4, num_classes=2)
    x = jnp.ones((3, 5))
    variables = _init(model, x)
    w = np.asarray(variables["params"]["recurrent_kernel"])
    np.testing.assert_allclose(w.T @ w, np.eye(4), atol=1e-5)  # orthogonal by default
    chex.assert_shape(variables["params"]["input_kernel"], (1, 4))
    chex.assert_shape(model.apply(variables, x), (3, 2))
    with pytest.raises(ValueError, match="batch, time, features"):
        model.apply(variables, jnp.ones((3, 5, 1, 1)))


def test_rnn_activation_is_configurable():
    model = models.RNN(hidden=3, num_classes=2, activation=nn.relu)
    x = np.asarray(jax.random.normal(jax.random.key(4), (2, 4, 1)), np.float64)
    variables = _init(model, x.astype(np.float32))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    h = np.zeros((2, 3))
    for t in range(4):
        h = np.maximum(h @ p["recurrent_kernel"] + x[:, t] @ p["input_kernel"] + p["bias"], 0)
    want = h @ p["logits"]["kernel"] + p["logits"]["bias"]
    np.testing.assert_allclose(model.apply(variables, x.astype(np.float32)), want, atol=1e-5)


@pytest.mark.parametrize(
    "model,match",
    [
        (models.MLP(dropout_rate=1.5), "dropout_rate=1.5"),
        (models.CNN(use_batchnorm=True, bn_momentum=1.0), "bn_momentum=1.0"),
        (models.ResNet(bn_epsilon=-1.0), "bn_epsilon=-1.0"),
        (models.RNN(dropout_rate=-0.1), "dropout_rate=-0.1"),
    ],
)
def test_bad_config_raises(model, match):
    with pytest.raises(ValueError, match=match):
        model.init(KEY, X_FLAT.reshape(6, 16, 4) if isinstance(model, models.RNN) else X_FLAT)


@pytest.mark.parametrize("name,model,x", CASES, ids=IDS)
def test_dtype_is_the_compute_dtype_and_param_dtype_the_storage(name, model, x):
    # Flax's mixed-precision convention: params stored in param_dtype, computed in dtype.
    mixed = model.clone(dtype=jnp.bfloat16)
    variables = _init(mixed, x)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables["params"])} == {jnp.dtype("float32")}
    out = mixed.apply(variables, x, train=False)
    assert out.dtype == jnp.bfloat16
    # the same params in float32 compute give nearly the same logits (bf16 has 8 bits)
    reference = model.apply(variables, x, train=False)
    np.testing.assert_allclose(np.asarray(out, np.float32), reference, atol=0.1, rtol=0.1)
    stored = _init(model.clone(param_dtype=jnp.bfloat16), x)
    assert {leaf.dtype for leaf in jax.tree.leaves(stored["params"])} == {jnp.dtype("bfloat16")}


def test_a_bf16_compute_model_trains_with_fit():
    import jaxopt_dl as jdl
    from jaxopt_dl import training

    (x, y), test = jdl.data.load_digits()
    model = models.MLP(hidden=(64,), dtype=jnp.bfloat16)
    state = training.create_train_state(model, jdl.adam(1e-2), KEY, x[:1])
    state, history = training.fit(state, (x, y), test, epochs=3, batch_size=64, progress=False)
    assert history.val_accuracy[-1] > 0.9
    assert all(np.isfinite(history.step_loss))
    assert {leaf.dtype for leaf in jax.tree.leaves(state.params)} == {jnp.dtype("float32")}
    assert training.predict(state, x[:4]).dtype == jnp.bfloat16


@pytest.mark.parametrize("name,model,x", CASES, ids=IDS)
def test_the_logits_layer_starts_at_output_scale_times_kernel_init(name, model, x):
    params = _init(model, x)["params"]
    unscaled = _init(model.clone(output_scale=1.0), x)["params"]
    np.testing.assert_allclose(
        params["logits"]["kernel"], 0.25 * unscaled["logits"]["kernel"], rtol=1e-6
    )
