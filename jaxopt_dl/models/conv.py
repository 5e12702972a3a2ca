"""A convolution that XLA:CPU runs fast, inside ``lax.scan`` too.

``jax.grad`` of ``lax.conv_general_dilated`` produces convolutions in transposed
layouts (the kernel gradient contracts over the batch; the input gradient uses the
kernel with its feature axes swapped). Outside loops XLA:CPU rewrites them into its
fast channels-last form; inside a ``while`` loop, which is how ``fit`` runs an epoch
(one ``lax.scan`` over the steps), it does not, and falls back to a generic loop nest:
a ResNet training step on 8x8 digits measured 10x slower in a scan than as separate
calls. On CPU, :func:`conv_general_dilated` computes the convolution as one matrix
product of the input's patches with the kernel; its gradient is matrix products and
slices, which XLA:CPU runs fast in loops or not (and on small feature maps faster than
its own convolution). Elsewhere it is ``lax.conv_general_dilated``.
"""

from __future__ import annotations

import itertools
from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["conv_general_dilated"]

Padding = Union[str, Sequence[tuple[int, int]]]


def _channels_last(nd: int) -> lax.ConvDimensionNumbers:
    """NHWC inputs and outputs, HWIO kernels, for ``nd`` spatial dimensions."""
    spatial = tuple(range(1, nd + 1))
    lhs = (0, nd + 1) + spatial
    return lax.ConvDimensionNumbers(lhs, (nd + 1, nd) + tuple(range(nd)), lhs)


def _patches_times_kernel(x, w, strides, pads, precision):
    """The convolution as ``patches @ kernel``: one slice of the padded input per
    kernel offset, concatenated along the features, times the flattened kernel."""
    nd = x.ndim - 2
    kernel = w.shape[:nd]
    padded = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    out = [(padded.shape[1 + d] - kernel[d]) // strides[d] + 1 for d in range(nd)]
    patches = [
        padded[
            (slice(None),)
            + tuple(
                slice(o, o + strides[d] * (out[d] - 1) + 1, strides[d])
                for d, o in enumerate(offset)
            )
        ]
        for offset in itertools.product(*(range(k) for k in kernel))
    ]
    patches = jnp.concatenate(patches, axis=-1) if len(patches) > 1 else patches[0]
    return jnp.dot(patches, w.reshape(-1, w.shape[-1]), precision=precision)


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Padding,
    lhs_dilation: Optional[Sequence[int]] = None,
    rhs_dilation: Optional[Sequence[int]] = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """``lax.conv_general_dilated``, as a matrix product of patches on CPU.

    On CPU the patches form covers what ``flax.linen.Conv`` uses by default:
    channels-last layout, any strides and padding, no dilation, one feature group.
    Anything else, and every other backend, goes to ``lax.conv_general_dilated``
    unchanged. Pass it as ``nn.Conv(..., conv_general_dilated=conv_general_dilated)``;
    jaxopt_dl's ``CNN`` and ``ResNet`` do. Values and gradients equal ``lax``'s up to
    the order of the sums.

    Args:
      lhs: the input, ``(batch, *spatial, features)`` on the fast path.
      rhs: the kernel, ``(*spatial, in_features, out_features)`` on the fast path.
      window_strides: the strides.
      padding: ``"SAME"``, ``"VALID"`` or ``(low, high)`` per spatial dimension.
      lhs_dilation: input dilation (``None``/ones on the fast path).
      rhs_dilation: kernel dilation (``None``/ones on the fast path).
      dimension_numbers: as ``lax``'s.
      feature_group_count: as ``lax``'s (1 on the fast path).
      batch_group_count: as ``lax``'s (1 on the fast path).
      precision: as ``lax``'s.
      preferred_element_type: as ``lax``'s (``None`` on the fast path).

    Returns:
      The convolution, as ``lax.conv_general_dilated`` returns it.

    Example:
      >>> import jax.numpy as jnp
      >>> x, w = jnp.ones((2, 8, 8, 1)), jnp.ones((3, 3, 1, 4))
      >>> conv_general_dilated(x, w, (2, 2), "SAME",
      ...     dimension_numbers=("NHWC", "HWIO", "NHWC")).shape
      (2, 4, 4, 4)
    """
    args = (lhs, rhs, window_strides, padding)
    kwargs = dict(
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    nd = lhs.ndim - 2
    ones = (None, (1,) * nd, [1] * nd)
    plain = (
        jax.default_backend() != "cpu"
        or dimension_numbers is None
        or lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != _channels_last(nd)
        or lhs_dilation not in ones
        or rhs_dilation not in ones
        or feature_group_count != 1
        or batch_group_count != 1
        or preferred_element_type is not None
    )
    if plain:
        return lax.conv_general_dilated(*args, **kwargs)
    strides = tuple(int(s) for s in window_strides)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:nd], strides, padding)
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    return _patches_times_kernel(lhs, rhs, strides, pads, precision)
