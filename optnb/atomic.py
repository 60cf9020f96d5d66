"""Atomic file writes: the new content goes to a temporary file beside the target, is flushed to
disk, then renamed over it. A crash, a kill or a full disk mid-write leaves the previous file (or
none), never half of one. Checkpoints, sidecars and reports are all written this way.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def replacing(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """``with replacing(path) as fh: fh.write(...)``: ``path`` is replaced only when the block
    succeeds; the temporary file (``.<name>.<random>.tmp``) is removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Replace ``path``'s content with ``text``, atomically."""
    with replacing(path) as fh:
        fh.write(text)
    return Path(path)
