"""The optimizers beyond the lectures (jaxopt_dl.contrib) against torch 2.13 and optax.

Trajectory parity, 100 steps, float32, rtol 2e-5: both sides start from the same
params, see the same precomputed noise stream and differentiate the same loss at their
own current params (an ill-conditioned quadratic plus a quartic term, so Rprop and the
adaptive methods see sign changes and varying curvature).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
import torch
from torch.optim import swa_utils

import jaxopt_dl as jdl
from jaxopt_dl import registry

STEPS = 100
RTOL = 2e-5
SHAPES = {"kernel": (3, 4), "bias": (5,)}
_SIZES = [int(np.prod(s)) for s in SHAPES.values()]
_N = sum(_SIZES)
_RNG = np.random.default_rng(7)
CURVATURE = np.logspace(-2, 1, _N).astype(np.float32)
W0 = (_RNG.uniform(0.5, 1.5, _N) * _RNG.choice([-1, 1], _N)).astype(np.float32)
NOISE = (0.1 * _RNG.standard_normal((STEPS, _N))).astype(np.float32)


def _split(flat):
    out, start = {}, 0
    for (name, shape), size in zip(SHAPES.items(), _SIZES):
        out[name] = flat[..., start : start + size].reshape(flat.shape[:-1] + shape)
        start += size
    return out


def _loss(params, curv, noise):
    """0.5 a w^2 + 0.05 w^4 + noise . w, for jnp or torch leaves."""
    return sum(
        (0.5 * curv[k] * params[k] ** 2 + 0.05 * params[k] ** 4 + noise[k] * params[k]).sum()
        for k in SHAPES
    )


def _flat(tree):
    return jnp.concatenate([tree[k].reshape(-1) for k in SHAPES])


def run_jax(opt, read=lambda params, state: params):
    """(STEPS, n) trajectory of ``read(params, state)`` under one jitted scan."""
    curv = jax.tree.map(jnp.asarray, _split(CURVATURE))

    @jax.jit
    def run(params, noise):
        def body(carry, noise_t):
            p, s = carry
            grads = jax.grad(_loss)(p, curv, noise_t)
            updates, s = opt.update(grads, s, p)
            p = optax.apply_updates(p, updates)
            return (p, s), _flat(read(p, s))

        return jax.lax.scan(body, (params, opt.init(params)), noise)[1]

    return np.asarray(
        run(jax.tree.map(jnp.asarray, _split(W0)), jax.tree.map(jnp.asarray, _split(NOISE)))
    )


def run_torch(make_opt, after_step=None):
    """torch's trajectory; ``after_step(params) -> flat array`` overrides what is recorded."""
    params = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in _split(W0).items()}
    curv = {k: torch.tensor(v) for k, v in _split(CURVATURE).items()}
    noise = _split(NOISE)
    opt = make_opt(list(params.values()))
    traj = []
    for t in range(STEPS):
        opt.zero_grad()
        _loss(params, curv, {k: torch.tensor(v[t]) for k, v in noise.items()}).backward()
        opt.step()
        if after_step is None:
            traj.append(torch.cat([params[k].detach().reshape(-1) for k in SHAPES]).numpy().copy())
        else:
            traj.append(after_step(params, opt))
    return np.stack(traj)


T = torch.optim
TORCH_CASES = [
    ("radam_defaults", jdl.radam(), lambda p: T.RAdam(p)),
    (
        "radam_lr_betas",
        jdl.radam(0.05, b1=0.8, b2=0.99, eps=1e-6),
        lambda p: T.RAdam(p, lr=0.05, betas=(0.8, 0.99), eps=1e-6),
    ),
    (
        "radam_coupled_wd",
        jdl.radam(0.02, weight_decay=0.1),
        lambda p: T.RAdam(p, lr=0.02, weight_decay=0.1),
    ),
    (
        "radam_decoupled_wd",
        jdl.radam(0.02, weight_decay=0.1, decoupled_weight_decay=True),
        lambda p: T.RAdam(p, lr=0.02, weight_decay=0.1, decoupled_weight_decay=True),
    ),
    ("rprop_defaults", jdl.rprop(), lambda p: T.Rprop(p)),
    (
        "rprop_custom",
        jdl.rprop(0.05, eta_minus=0.3, eta_plus=1.5, min_step_size=1e-4, max_step_size=0.2),
        lambda p: T.Rprop(p, lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-4, 0.2)),
    ),
    ("asgd_defaults", jdl.asgd(), lambda p: T.ASGD(p)),
    (
        "asgd_averaging",
        jdl.asgd(0.05, lambd=1e-2, alpha=0.5, t0=20, weight_decay=0.01),
        lambda p: T.ASGD(p, lr=0.05, lambd=1e-2, alpha=0.5, t0=20, weight_decay=0.01),
    ),
    ("nadam_defaults", jdl.torch_nadam(), lambda p: T.NAdam(p)),
    (
        "nadam_momentum_decay",
        jdl.torch_nadam(0.01, b1=0.95, momentum_decay=0.05, eps=1e-6),
        lambda p: T.NAdam(p, lr=0.01, betas=(0.95, 0.999), momentum_decay=0.05, eps=1e-6),
    ),
    (
        "nadam_coupled_wd",
        jdl.torch_nadam(0.01, weight_decay=0.1),
        lambda p: T.NAdam(p, lr=0.01, weight_decay=0.1),
    ),
    (
        "nadamw",
        jdl.torch_nadam(0.01, weight_decay=0.1, decoupled_weight_decay=True),
        lambda p: T.NAdam(p, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    ),
]


@pytest.mark.parametrize("name,opt,make_torch", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_torch_parity(name, opt, make_torch):
    np.testing.assert_allclose(run_jax(opt), run_torch(make_torch), rtol=RTOL, atol=1e-6)


def test_asgd_average_matches_torch_ax():
    opt = jdl.asgd(0.05, lambd=1e-2, t0=30)

    def torch_ax(params, torch_opt):
        return torch.cat([torch_opt.state[params[k]]["ax"].reshape(-1) for k in SHAPES]).numpy()

    ours = run_jax(opt, read=lambda p, s: jdl.asgd_average(s))
    theirs = run_torch(lambda p: T.ASGD(p, lr=0.05, lambd=1e-2, t0=30), torch_ax)
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=1e-6)


def _torch_averaged(averaged_model, start):
    """torch: SGD steps, ``averaged_model.update_parameters`` after step ``start + 1`` on."""
    box = {}

    def make(params):
        module = torch.nn.ParameterList(params)
        box["avg"] = averaged_model(module)
        box["step"] = 0
        return T.SGD(params, lr=0.02, momentum=0.9)

    def after(params, opt):
        box["step"] += 1
        if box["step"] > start:
            box["avg"].update_parameters(torch.nn.ParameterList(list(params.values())))
        return torch.cat([q.detach().reshape(-1) for q in box["avg"].module.parameters()]).numpy()

    return make, after


@pytest.mark.parametrize(
    "mode,decay,start", [("ema", 0.9, 0), ("ema", 0.999, 10), ("swa", 0.0, 0), ("swa", 0.0, 40)]
)
def test_param_averaging_matches_torch_swa_utils(mode, decay, start):
    if mode == "ema":
        make_avg = lambda m: swa_utils.AveragedModel(  # noqa: E731
            m, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(decay)
        )
    else:
        make_avg = swa_utils.AveragedModel
    make, after = _torch_averaged(make_avg, start)
    theirs = run_torch(make, after)
    opt = jdl.param_averaging(jdl.sgd(0.02, 0.9), mode=mode, decay=decay, start=start)
    ours = run_jax(opt, read=lambda p, s: jdl.averaged_params(s))
    # Before averaging starts torch's copy holds the initial params, as ours does.
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=1e-6)


def test_param_averaging_overwrite_is_keras_ema_overwrite():
    """Keras: every k-th iteration the variables become their moving average."""
    k, decay = 5, 0.9
    opt = jdl.param_averaging(jdl.sgd(0.05), decay=decay, overwrite_every=k)
    params, avg = _split(W0.copy()), None
    state = opt.init(jax.tree.map(jnp.asarray, params))
    curv = _split(CURVATURE)
    noise = _split(NOISE)
    p = jax.tree.map(jnp.asarray, params)
    ref = {key: v.astype(np.float64) for key, v in params.items()}
    for t in range(1, 31):
        g = jax.grad(_loss)(
            p, jax.tree.map(jnp.asarray, curv), jax.tree.map(lambda v: jnp.asarray(v[t - 1]), noise)
        )
        u, state = opt.update(g, state, p)
        p = optax.apply_updates(p, u)
        g_ref = {key: np.asarray(v, np.float64) for key, v in g.items()}
        ref = {key: ref[key] - 0.05 * g_ref[key] for key in ref}
        avg = (
            dict(ref)
            if avg is None
            else {key: decay * avg[key] + (1 - decay) * ref[key] for key in ref}
        )
        if t % k == 0:
            ref = dict(avg)
        np.testing.assert_allclose(
            np.asarray(_flat(p)), np.asarray(_flat(ref)), rtol=1e-4, atol=1e-6
        )


OPTAX_CASES = [
    ("adabelief", jdl.adabelief(0.01), optax.adabelief(0.01)),
    ("yogi", jdl.yogi(0.05, b2=0.99), optax.yogi(0.05, b2=0.99)),
    ("lars", jdl.lars(0.1, weight_decay=1e-3), optax.lars(0.1, weight_decay=1e-3)),
    (
        "sam",
        jdl.sam(optax.sgd(0.02), optax.chain(optax.contrib.normalize(), optax.sgd(0.05))),
        optax.contrib.sam(optax.sgd(0.02), optax.chain(optax.contrib.normalize(), optax.sgd(0.05))),
    ),
    (
        "schedule_free_sgd",
        jdl.schedule_free_sgd(0.05, warmup_steps=10),
        optax.contrib.schedule_free_sgd(0.05, warmup_steps=10),
    ),
    (
        "schedule_free_adamw",
        jdl.schedule_free_adamw(0.01, weight_decay=1e-3),
        optax.contrib.schedule_free_adamw(0.01, weight_decay=1e-3),
    ),
    ("muon", jdl.muon(0.02), optax.contrib.muon(0.02)),
]


@pytest.mark.parametrize("name,ours,theirs", OPTAX_CASES, ids=[c[0] for c in OPTAX_CASES])
def test_optax_parity(name, ours, theirs):
    np.testing.assert_allclose(run_jax(ours), run_jax(theirs), rtol=RTOL, atol=1e-6)
    chex.assert_trees_all_equal_structs(ours.init(jnp.ones(3)), theirs.init(jnp.ones(3)))


def test_lookahead_matches_optax_on_lookahead_params():
    curv = jnp.asarray(CURVATURE[:5])

    def run(opt):
        params = optax.LookaheadParams.init_synced(jnp.asarray(W0[:5]))
        state = opt.init(params)
        for t in range(STEPS):
            g = jax.grad(
                lambda w: _loss(
                    {"kernel": w[:0], "bias": w},
                    {"kernel": curv[:0], "bias": curv},
                    {"kernel": w[:0], "bias": jnp.asarray(NOISE[t, :5])},
                )
            )
            updates, state = opt.update(g(params.fast), state, params)
            params = optax.apply_updates(params, updates)
        return np.asarray(params.slow)

    np.testing.assert_allclose(
        run(jdl.lookahead(optax.adam(0.05))),
        run(optax.lookahead(optax.adam(0.05), 5, 0.5)),
        rtol=RTOL,
        atol=1e-6,
    )


def test_states_are_optax_classes():
    p = jnp.ones(3)
    assert isinstance(jdl.radam().init(p), optax.ScaleByAdamState)
    assert isinstance(jdl.rprop().init(p), optax.ScaleByRpropState)


BAD = [
    (lambda: jdl.radam(-1.0), "learning_rate=-1.0"),
    (lambda: jdl.radam(b2=1.0), "b2=1.0"),
    (lambda: jdl.rprop(eta_minus=1.5), "eta_minus=1.5"),
    (lambda: jdl.rprop(eta_plus=0.9), "eta_plus=0.9"),
    (lambda: jdl.rprop(min_step_size=0.1, max_step_size=0.01), "max_step_size=0.01"),
    (lambda: jdl.asgd(lambd=-1e-4), "lambd=-0.0001"),
    (lambda: jdl.asgd(weight_decay=float("nan")), "weight_decay=nan"),
    (lambda: jdl.torch_nadam(momentum_decay=-1.0), "momentum_decay=-1.0"),
    (lambda: jdl.adabelief(1e-3, b1=1.2), "b1=1.2"),
    (lambda: jdl.yogi(1e-3, eps=-1.0), "eps=-1.0"),
    (lambda: jdl.lars(0.1, momentum=1.0), "momentum=1.0"),
    (lambda: jdl.sam(jdl.sgd(0.1), jdl.sgd(0.1), sync_period=0), "sync_period=0"),
    (lambda: jdl.lookahead(jdl.sgd(0.1), slow_step_size=2.0), "slow_step_size=2.0"),
    (lambda: jdl.lookahead(jdl.sgd(0.1), sync_period=2.5), "sync_period=2.5"),
    (lambda: jdl.schedule_free_sgd(warmup_steps=0), "warmup_steps=0"),
    (lambda: jdl.schedule_free_adamw(b2=-0.1), "b2=-0.1"),
    (lambda: jdl.muon(0.02, ns_steps=0), "ns_steps=0"),
    (lambda: jdl.muon(-0.02), "learning_rate=-0.02"),
    (lambda: jdl.param_averaging(jdl.sgd(0.1), mode="mean"), "mode='mean'"),
    (lambda: jdl.param_averaging(jdl.sgd(0.1), decay=1.0), "decay=1.0"),
    (lambda: jdl.param_averaging(jdl.sgd(0.1), start=-1), "start=-1"),
    (lambda: jdl.param_averaging(jdl.sgd(0.1), overwrite_every=0), "overwrite_every=0"),
]


@pytest.mark.parametrize("build,message", BAD, ids=[m for _, m in BAD])
def test_bad_hyperparameters_raise_naming_argument_and_value(build, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build()


CONTRIB = [
    name
    for name, entry in registry.OPTIMIZERS.items()
    if entry.factory.startswith("jaxopt_dl.contrib") and not entry.wraps
]


@pytest.mark.parametrize("name", CONTRIB)
def test_vmap_over_learning_rate(name):
    """Validation lets traced rates through: one program over a grid of rates."""
    factory = registry.factory(name)
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    grads = {"w": jnp.full((3, 2), 0.5), "b": jnp.full(2, -0.5)}

    def one(lr):
        opt = factory(lr)
        updates, _ = opt.update(grads, opt.init(params), params)
        return updates

    out = jax.jit(jax.vmap(one))(jnp.array([1e-3, 1e-2]))
    chex.assert_tree_all_finite(out)
    assert out["w"].shape == (2, 3, 2)


@pytest.mark.parametrize("factory", [jdl.asgd, jdl.rprop])
def test_schedule_rejected_where_the_method_builds_its_own(factory):
    with pytest.raises(TypeError, match="learning_rate"):
        factory(jdl.linear_schedule(0.1, 0.0, 10))


def test_needs_params():
    opt = jdl.asgd()
    with pytest.raises(ValueError, match="needs the params"):
        opt.update(jnp.ones(2), opt.init(jnp.ones(2)))


def test_bad_counts_and_schedule_free_b1_zero_raise_naming_argument_and_value():
    cases = [
        (lambda: jdl.lookahead(jdl.sgd(0.1), sync_period=float("nan")), "sync_period=nan"),
        (lambda: jdl.muon(0.02, ns_steps=float("inf")), "ns_steps=inf"),
        (lambda: jdl.param_averaging(jdl.sgd(0.1), start=float("inf")), "start=inf"),
        (lambda: jdl.schedule_free_adamw(warmup_steps=float("nan")), "warmup_steps=nan"),
    ]
    for build, message in cases:
        with pytest.raises(ValueError, match="must be finite") as error:
            build()
        assert message in str(error.value)
    # b1 = 0 would divide by zero when the average x is recovered from y and z.
    for factory in (jdl.schedule_free_sgd, jdl.schedule_free_adamw):
        with pytest.raises(ValueError, match="b1=0"):
            factory(b1=0)


MISTYPED = [
    (lambda: jdl.lookahead(None), "fast_optimizer=None"),
    (lambda: jdl.sam(None, jdl.sgd(0.1)), "optimizer=None"),
    (lambda: jdl.sam(jdl.sgd(0.1), None), "adv_optimizer=None"),
    (lambda: jdl.param_averaging(None), "optimizer=None"),
    (lambda: jdl.sam(jdl.sgd(0.1), jdl.sgd(0.1), opaque_mode=1), "opaque_mode=1"),
    (lambda: jdl.lars(0.1, trust_ratio_mask=None), "trust_ratio_mask=None"),
    (lambda: jdl.muon(0.02, ns_coeffs=None), "ns_coeffs=None"),
    (lambda: jdl.schedule_free_adamw(weight_decay=None), "weight_decay=None"),
    (lambda: jdl.radam(decoupled_weight_decay="yes"), "decoupled_weight_decay='yes'"),
]


@pytest.mark.parametrize("build,message", MISTYPED, ids=[m for _, m in MISTYPED])
def test_mistyped_arguments_raise_type_error_naming_them(build, message):
    with pytest.raises(TypeError) as error:
        build()
    assert message in str(error.value)


def test_integral_float_counts_build_the_same_optimizer():
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    grads = {"w": jnp.full((3, 2), 0.5), "b": jnp.full(2, -0.5)}
    for make in (
        lambda n: jdl.muon(0.02, ns_steps=n),
        lambda n: jdl.schedule_free_sgd(0.1, warmup_steps=n),
    ):
        as_int, as_float = make(5), make(5.0)
        chex.assert_trees_all_equal(
            as_int.update(grads, as_int.init(params), params)[0],
            as_float.update(grads, as_float.init(params), params)[0],
        )


TORCH_STYLE = {
    "radam": (jdl.radam, {"learning_rate": 0.02, "weight_decay": 0.1}),
    "radamw": (
        jdl.radam,
        {"learning_rate": 0.02, "weight_decay": 0.1, "decoupled_weight_decay": True},
    ),
    "rprop": (jdl.rprop, {"learning_rate": 0.05}),
    "asgd": (jdl.asgd, {"learning_rate": 0.05, "weight_decay": 0.1, "t0": 1}),
    "torch_nadam": (jdl.torch_nadam, {"learning_rate": 0.01, "weight_decay": 0.1}),
    "torch_nadamw": (
        jdl.torch_nadam,
        {"learning_rate": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
    ),
}
PARAMS2 = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), "b": jnp.array([0.5, -2.0])}


def _three_steps(opt, params=PARAMS2, **extra_args):
    """Updates and final state of three jitted steps on the quadratic ``sum(w^2 + w)``."""
    state = opt.init(params)
    step = jax.jit(lambda g, s, p: opt.update(g, s, p, **extra_args))
    out = []
    for _ in range(3):
        grads = jax.tree.map(lambda p: 2 * p + 1, params)
        updates, state = step(grads, state, params)
        params = jdl.apply_updates(params, updates)
        out.append(updates)
    return out, state


@pytest.mark.parametrize("name", sorted(TORCH_STYLE))
def test_torch_style_methods_accept_and_ignore_extra_update_args(name):
    factory, kwargs = TORCH_STYLE[name]
    plain, _ = _three_steps(factory(**kwargs))
    extra, _ = _three_steps(factory(**kwargs), loss=jnp.array(1.0), unexpected_argument=1)
    chex.assert_trees_all_equal(extra, plain)


@pytest.mark.parametrize("name", sorted(TORCH_STYLE))
def test_torch_style_methods_under_inject_hyperparams_match_the_plain_ones(name):
    """Every number traced (weight decay included) gives the numbers of the constants
    (to float32 rounding of the traced ``1 - b2``, as in optax's own test)."""
    factory, kwargs = TORCH_STYLE[name]
    plain, plain_state = _three_steps(factory(**kwargs))
    traced, traced_state = _three_steps(jdl.inject_hyperparams(factory)(**kwargs))
    chex.assert_trees_all_close(traced, plain, rtol=1e-4)
    chex.assert_trees_all_close(traced_state.inner_state, plain_state, rtol=1e-4)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("name", sorted(TORCH_STYLE))
def test_torch_style_methods_keep_the_gradients_dtype_and_their_state_dtypes(name, dtype):
    factory, kwargs = TORCH_STYLE[name]
    opt = factory(**kwargs)
    params = jax.tree.map(lambda p: p.astype(dtype), PARAMS2)
    state = opt.init(params)
    updates, new_state = _three_steps(opt, params)
    assert {u.dtype for u in jax.tree.leaves(updates)} == {jnp.dtype(dtype)}
    assert jax.tree.map(lambda x: x.dtype, new_state) == jax.tree.map(lambda x: x.dtype, state)


def test_radam_on_complex_gradients_of_one_phase_is_the_real_step_turned_by_that_phase():
    """With ``|g|^2`` in the second moment (as optax), a gradient ``|g| e^{i phi}`` of
    fixed phase moves the params by the real step for ``|g|``, turned by ``e^{i phi}``."""
    opt = jdl.radam(0.01)
    magnitudes = jnp.linspace(0.5, 2.0, 3)
    phase = jnp.exp(1j * jnp.array([0.3, -1.2, 2.5], jnp.float32)).astype(jnp.complex64)
    real_state = opt.init(jnp.zeros(3))
    complex_state = opt.init(jnp.zeros(3, jnp.complex64))
    for t in range(8):  # rho_t > 5 from step 6 on: both branches are exercised
        g = magnitudes * (1.0 + 0.1 * t)
        real_update, real_state = opt.update(g, real_state)
        complex_update, complex_state = opt.update(g * phase, complex_state)
        assert complex_update.dtype == jnp.complex64
        np.testing.assert_allclose(complex_update, real_update * phase, rtol=1e-5, atol=1e-9)
