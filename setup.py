"""Builds the fused CPU step kernel (``jaxopt_dl/fused/fused_update.cc``) at install time.

The kernel is an XLA FFI library compiled against the headers jaxlib ships
(``jax.ffi.include_dir()``), so ``jax`` must be importable while building: ``make``
installs with ``--no-build-isolation`` from the project's virtual environment, and an
isolated build gets it from ``[build-system] requires``. The extension is optional: with
no C++ compiler the package installs without it and uses the plain optax path.
"""

import sys

import jax
from setuptools import Extension, setup

_UNIX = sys.platform != "win32"

setup(
    ext_modules=[
        Extension(
            "jaxopt_dl.fused._fused_update",
            sources=["jaxopt_dl/fused/fused_update.cc"],
            include_dirs=[jax.ffi.include_dir()],
            language="c++",
            extra_compile_args=(
                [
                    "-O3",
                    "-std=c++17",
                    "-ffp-contract=off",
                    "-fno-math-errno",
                    "-pthread",
                    "-Wno-attributes",
                    "-Wno-return-type",
                ]
                if _UNIX
                else ["/O2", "/std:c++17", "/fp:precise"]
            ),
            extra_link_args=["-pthread"] if _UNIX else [],
            optional=True,
        )
    ],
)
