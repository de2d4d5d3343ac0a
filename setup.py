"""Build of the compiled kernels (``movierec._kernels``); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "movierec._kernels",
            [
                "src/movierec/_kernels.c",
                "src/movierec/_features.c",
                "src/movierec/_ranks.c",
                "src/movierec/_pool.c",
                "src/movierec/_spare.c",
            ],
            depends=["src/movierec/_kernels.h"],
            extra_compile_args=["-O3", "-std=c99", "-ffp-contract=off", "-pthread"],
            extra_link_args=["-pthread"],
        )
    ]
)
