"""Builds the SM3 engine (sm3engine/_sm3engine.c) with the system's C compiler.

The project's metadata is in pyproject.toml; only the extension is declared here. Its
SIMD paths carry their own target attributes, so the build needs no -march flag and the
result runs on any x86_64 CPU (the path is chosen at run time). ``optional``: a machine
without a compiler still installs 留痕, which then hashes SM3 with hashlib and says so.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sm3engine._sm3engine",
            sources=["sm3engine/_sm3engine.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
