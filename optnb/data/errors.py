"""Errors raised by :mod:`optnb.data`; all are ``ValueError`` subclasses with one-line messages."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset name, file or option is not usable."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """The dataset's files are not on disk (the message names the folder and the fallback)."""
