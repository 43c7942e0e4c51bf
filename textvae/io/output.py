"""Files a command writes: whole or not at all, and a failure that names the path.

A file is written beside its destination under a temporary name and renamed over it, so a reader never sees
half of it; a missing directory, a read-only file or a full disk is one `OutputError` naming the path, and
the partial file is removed.
"""

from __future__ import annotations

import os
from pathlib import Path


class OutputError(Exception):
    """A file that cannot be written, worded for the user."""


def write_file(path, write) -> Path:
    """Call `write(f)` on a binary file that becomes `path` once it has all been written."""
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: there is no directory {path.parent}")
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory")
    if path.exists() and not path.stat().st_mode & 0o222:
        raise OutputError(f"cannot write {path}: the file is read-only")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
