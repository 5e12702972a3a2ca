"""The fused optimizer step: update and apply in one pass over memory on CPU.

:func:`apply_gradients` is what ``TrainState.apply_gradients`` (hence ``fit``,
``sweep`` and the command line) calls for every step. It reads the optimizer's
description: a plain prefix (global-norm clipping, an L2 term, masks) followed by Adam
(with or without decoupled weight decay) or heavy-ball momentum and a learning rate
runs as one compiled multi-threaded kernel (an XLA FFI library built when the package
is installed) over all float32 leaves, the prefix entering as scalars. Any other
optimizer, GPU/TPU, or a process where the kernel was not built or cannot be loaded
runs ``tx.update`` and ``apply_updates``. Both paths give the same optax state and,
up to how XLA rounds the plain step (see :func:`apply_gradients`), the same numbers.
"""

from jaxopt_dl.fused._kernel import kernel_available, local_program
from jaxopt_dl.fused.step import apply_gradients, fusable

__all__ = ["apply_gradients", "fusable", "kernel_available", "local_program"]
