"""The optional compiled walker of OTLP requests (via_otlp/receive/_wirewalk.c).

Everything else is in pyproject.toml. `optional=True`: where it cannot be compiled (no C
compiler or Python headers) the install goes on and normalisation runs in pure Python, the
reference it is tested against (tests/receive/test_wirewalk.py asserts it is built here).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "via_otlp.receive._wirewalk",
            ["via_otlp/receive/_wirewalk.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
        )
    ]
)
