"""Flax linen models: MLP, CNN, ResNet, a vanilla tanh RNN, and the 1-D CNN1D and GRU.

All are called as ``model.apply(variables, x, train=...)``:

* ``variables = model.init(key, x, train=False)`` holds ``"params"`` and, with batch
  norm, ``"batch_stats"`` (the running averages).
* ``train=True`` normalizes with the batch statistics and updates the running averages:
  ``logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"],
  rngs={"dropout": key})`` (``rngs`` only needed with ``dropout_rate > 0``).
* ``train=False`` uses the running averages and no dropout: deterministic.
* Every layer sows its output activation into the ``"intermediates"`` collection as
  ``"<layer>_out"`` (``"dense_0_out"``, ..., ``"logits_out"``; residual blocks sow
  ``"out"`` in their own scope) — read it with ``mutable=["intermediates"]`` for
  per-layer activation mean/std.
* ``kernel_init`` accepts any initializer of :mod:`jaxopt_dl.initializers`.
* ``CNN`` and ``ResNet`` convolve with :func:`conv_general_dilated`: on CPU a matrix
  product of patches, whose gradient XLA runs fast inside ``fit``'s ``lax.scan``
  (``lax``'s own convolution gradients run about 10x slower there). Pass it to your own
  ``nn.Conv(..., conv_general_dilated=...)`` for the same.
"""

from jaxopt_dl.models.cnn import CNN
from jaxopt_dl.models.conv import conv_general_dilated
from jaxopt_dl.models.mlp import MLP
from jaxopt_dl.models.resnet import ResidualBlock, ResNet
from jaxopt_dl.models.rnn import RNN
from jaxopt_dl.models.sequence import CNN1D, GRU

__all__ = [
    "MLP",
    "CNN",
    "ResNet",
    "ResidualBlock",
    "RNN",
    "CNN1D",
    "GRU",
    "conv_general_dilated",
]
