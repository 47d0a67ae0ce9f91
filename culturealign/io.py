"""Safe file output: atomic writes and never overwriting a result silently."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import CultureAlignError


def _default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def to_json(data, indent: int | None = 2) -> str:
    return json.dumps(data, indent=indent, default=_default, allow_nan=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data) -> None:
    atomic_write_text(path, to_json(data) + "\n")


def refuse_overwrite(path: str | Path, force: bool, what: str = "output") -> None:
    """Raise unless ``path`` is free or the user said ``--force``."""
    path = Path(path)
    if path.exists() and not force and (path.is_file() or any(path.iterdir())):
        raise CultureAlignError(f"{what} {path} already exists: choose another path, or pass --force to overwrite")


def read_json(path: str | Path, what: str = "file", hint: str = "") -> object:
    """Parse a JSON file; a missing, unreadable or corrupt file is a :class:`CultureAlignError` naming ``what``.

    ``hint`` says what to do about it (for example "re-run `culturealign align`").
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))  # a byte-order mark is allowed
    except FileNotFoundError:
        raise CultureAlignError(f"{what} {path} does not exist" + (f": {hint}" if hint else "")) from None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad UTF-8, bad JSON, a 5000-digit number
        raise CultureAlignError(f"{what} {path} is unreadable or not valid JSON ({str(exc)[:200]})"
                                + (f": {hint}" if hint else "")) from None
