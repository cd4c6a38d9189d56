"""The one compiled module, ``sluice.wire._scan`` (the relay's commonest frame, recognised in
C); everything else about the package is in pyproject.toml.

The module is optional: without a C compiler the package installs, and the relay takes its
general path for every frame (the test suite insists on the module, see tests/wire).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sluice.wire._scan",
            ["src/sluice/wire/_scan.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
