"""The models' convolution: lax's values and gradients, no XLA convolution inside a scan."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

import jaxopt_dl as jdl
from jaxopt_dl.models.conv import conv_general_dilated

NHWC = ("NHWC", "HWIO", "NHWC")
# (spatial size, kernel, stride, padding): the models' cases (3x3 SAME, stride 1 and 2;
# 1x1 stride 2), strides leaving input rows unused (7 with 2 and 3), even kernels,
# VALID and uneven explicit padding.
CASES = [
    ((8, 8), 3, 1, "SAME"),
    ((8, 8), 3, 2, "SAME"),
    ((4, 4), 1, 2, "SAME"),
    ((7, 5), 2, 3, "SAME"),
    ((7, 5), 3, 2, "VALID"),
    ((7, 5), 2, 2, "VALID"),
    ((7, 5), 3, 3, ((1, 0), (2, 1))),
    ((4, 4), 2, 1, ((1, 0), (2, 1))),
]


def _loss(conv, stride, padding, dimension_numbers=NHWC, **kwargs):
    def loss(x, w):
        y = conv(x, w, stride, padding, dimension_numbers=dimension_numbers, **kwargs)
        return jnp.sum(jnp.sin(y))

    return loss


@pytest.mark.parametrize("size,kernel,stride,padding", CASES)
def test_values_and_gradients_equal_lax(size, kernel, stride, padding):
    key = jax.random.key(0)
    x = jax.random.normal(key, (3, *size, 2))
    w = jax.random.normal(jax.random.fold_in(key, 1), (kernel, kernel, 2, 4))
    strides = (stride, stride)
    expected = lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC)
    got = conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    grads = jax.grad(_loss(lax.conv_general_dilated, strides, padding), (0, 1))(x, w)
    ours = jax.grad(_loss(conv_general_dilated, strides, padding), (0, 1))(x, w)
    for a, b in zip(ours, grads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "shape,dims",
    [((2, 9, 3), ("NWC", "WIO", "NWC")), ((2, 5, 4, 6, 3), ("NDHWC", "DHWIO", "NDHWC"))],
)
def test_one_and_three_spatial_dimensions(shape, dims):
    key = jax.random.key(1)
    x = jax.random.normal(key, shape)
    w = jax.random.normal(jax.random.fold_in(key, 1), (3,) * (len(shape) - 2) + (3, 2))
    args = (x, w, (2,) * (len(shape) - 2), "SAME")
    np.testing.assert_allclose(
        conv_general_dilated(*args, dimension_numbers=dims),
        lax.conv_general_dilated(*args, dimension_numbers=dims),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(rhs_dilation=(2, 2)),
        dict(lhs_dilation=(2, 2)),
        dict(dimension_numbers=("NCHW", "OIHW", "NCHW")),
        dict(dimension_numbers=None),
    ],
)
def test_other_convolutions_are_lax_exactly(kwargs):
    kwargs = {"dimension_numbers": NHWC, **kwargs}
    x = jax.random.normal(jax.random.key(2), (2, 6, 6, 6))
    kernel = (3, 3, 6, 6) if kwargs["dimension_numbers"] == NHWC else (6, 6, 3, 3)
    w = jax.random.normal(jax.random.key(3), kernel)
    np.testing.assert_array_equal(
        conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), **kwargs),
        lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), **kwargs),
    )


@pytest.mark.parametrize(
    "model",
    [
        jdl.models.CNN(features=(4, 8), dense=8, use_batchnorm=True),
        jdl.models.ResNet(stage_sizes=(1, 1), width=4),
    ],
    ids=["CNN", "ResNet"],
)
def test_a_scanned_training_step_has_no_xla_convolution(model):
    """XLA:CPU runs the transposed convolutions of a gradient slowly inside loops; the
    models' steps, scanned as ``fit`` scans them, contain matrix products instead."""
    x = jnp.zeros((4, 64))
    y = jnp.arange(4) % 10
    variables = model.init(jax.random.key(0), x, train=False)

    def step(params, _):
        def loss(p):
            logits, _ = model.apply(
                {**variables, "params": p}, x, train=True, mutable=["batch_stats"]
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, jax.grad(loss)(params)), None

    scanned = jax.jit(lambda p: lax.scan(step, p, None, length=2)[0])
    hlo = scanned.lower(variables["params"]).compile().as_text()
    assert re.search(r"\bwhile\(", hlo)
    assert not re.search(r"\bconvolution\(", hlo)
