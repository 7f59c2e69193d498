"""Only the optional compiled extension lives here; every other setting is in setup.cfg.

pyproject.toml's `[[tool.setuptools.ext-modules]]` would need a `[project]` table (setuptools
refuses it without one), which would move the declarative metadata out of setup.cfg.
"""
from setuptools import Extension, setup

setup(ext_modules=[
    # optional: with no C compiler, `pip install` still succeeds and speedysvc uses its
    # pure-Python shared-memory path (see speedysvc/shm/native.py)
    Extension("speedysvc.shm._fastpath", ["speedysvc/shm/_fastpath.c"], optional=True,
              extra_compile_args=["-O2"]),
])
