"""The fused optimizer step: update and apply in one pass over memory on CPU.

:func:`apply_gradients` is what ``TrainState.apply_gradients`` (hence ``fit``,
``sweep`` and the command line) calls for every step. For ``jdl.adam``, ``jdl.adamw``
and ``jdl.sgd`` with momentum it runs a compiled multi-threaded kernel (an XLA FFI
library built when the package is installed) over all float32 leaves; for any other
optimizer, on GPU/TPU, or where the kernel was not built, it runs ``tx.update`` and
``apply_updates``. Both paths give the same numbers and the same optax state.
"""

from jaxopt_dl.fused._kernel import kernel_available, local_program
from jaxopt_dl.fused.devices import over_host_devices
from jaxopt_dl.fused.step import apply_gradients, fusable

__all__ = ["apply_gradients", "fusable", "kernel_available", "local_program", "over_host_devices"]
