"""Device (GPU) correctness checks, marked ``gpu``: ``pytest -m gpu tests/device``.

A package (this file) so that its ``conftest.py`` does not shadow ``tests/conftest.py``, which
other test modules import as ``conftest``.
"""
