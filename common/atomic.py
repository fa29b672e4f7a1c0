"""Atomic file writes: a temporary file beside the target, fsync, `os.replace`, mode 0644.

A reader never sees half a file, a killed writer leaves the old file (or none), and the file
gets the ordinary permissions a plain `open(path, "w")` would give (0666 less the umask), not
the 0600 of `tempfile.mkstemp`. Every results file goes through `replacing`: bytes and text
(`write_bytes`, `write_text`), and writers that want a path of their own (matplotlib's
`savefig`, `tarfile`), which get a temporary one with the target's suffix.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def replacing(path, overwrite: bool = False):
    """Yield a temporary path beside `path` (same directory, same suffix: a writer that picks
    its format from the name picks the right one); when the block ends, the file is fsync'ed,
    given mode 0644 and moved onto `path` in one `os.replace`. An exception leaves no temporary
    file and `path` as it was. An existing `path` is refused unless `overwrite`."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another --out or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                               suffix=path.suffix or ".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes(path, data: bytes, overwrite: bool = False) -> Path:
    """Write `data` to `path` atomically; refuse to replace an existing file unless asked."""
    with replacing(path, overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path, text: str, overwrite: bool = False) -> Path:
    """`write_bytes` of UTF-8 text."""
    return write_bytes(path, text.encode("utf-8"), overwrite)


def save_figure(fig, path, overwrite: bool = True, **savefig) -> Path:
    """A matplotlib figure at `path` (its format from the suffix), atomically."""
    with replacing(path, overwrite) as tmp:
        fig.savefig(tmp, **savefig)
    return Path(path)
