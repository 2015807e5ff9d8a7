"""Builds the compiled scoring kernel; all other metadata lives in pyproject.toml.

Compiler directives live here and nowhere else. ``FIDELIS_DEBUG_KERNEL=1`` builds the
kernel with bounds and wraparound checks on, for chasing an indexing bug.
"""
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FIDELIS_DEBUG_KERNEL") == "1"

directives = {
    "language_level": "3",
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "nonecheck": False,
    "embedsignature": True,
}

extensions = [
    Extension(
        "fidelis.core.engine._kernel",
        ["core/engine/_kernel.pyx"],
        include_dirs=[numpy.get_include(), "core/engine"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # the per-receipt points function is called from the scoring loop and for returns: inline
        # it into the loop (GCC would keep it out of line for its size, a 20 % slower kernel)
        extra_compile_args=["-O0", "-g"] if DEBUG else ["-O3", "-finline-limit=100000", "--param", "large-function-growth=10000", "--param", "inline-unit-growth=10000"],
    )
]

setup(ext_modules=cythonize(extensions, include_path=["core/engine"], compiler_directives=directives))
