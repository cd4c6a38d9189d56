"""The compiled modules: ``sluice.wire._scan`` (the relay's commonest frame, recognised in C)
and ``sluice._redact`` (the first look for a secret coming back from an upstream); everything
else about the package is in pyproject.toml.

The modules are optional: without a C compiler the package installs, the relay takes its
general path for every frame, and the redactor looks with its regular expressions alone (the
test suite insists on the modules, see tests/wire and tests/test_redact.py).
"""

from setuptools import Extension, setup

COMPILE_ARGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(
    ext_modules=[
        Extension(
            "sluice.wire._scan",
            ["src/sluice/wire/_scan.c"],
            depends=["src/sluice/_tokens.h"],
            optional=True,
            extra_compile_args=COMPILE_ARGS,
        ),
        Extension(
            "sluice._redact",
            ["src/sluice/_redact.c"],
            depends=["src/sluice/_tokens.h"],
            optional=True,
            extra_compile_args=COMPILE_ARGS,
        ),
    ]
)
