"""Download corpora into a local cache and check their SHA-1, as d2l's `download` does.

Nothing corrupt is ever left in the cache: a download goes to a temporary file beside its
target and is moved into place only after its hash matched.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Optional

from .errors import DataError

# d2l's DATA_HUB entries: name -> (url, sha1).
DATA_URL = "http://d2l-data.s3-accelerate.amazonaws.com/"
DATA_HUB = {
    "time_machine": (DATA_URL + "timemachine.txt", "090b5e7e70c295757f55df93cb0a180b9691891a"),
    "fra-eng": (DATA_URL + "fra-eng.zip", "94646ad1522d915e7b0f9296181140edcf86a4f5"),
}


def cache_dir() -> Path:
    """The download cache: `$RNNBENCH_CACHE`, else `~/.cache/rnnbench`."""
    env = os.environ.get("RNNBENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "rnnbench"


def sha1_file(path) -> str:
    """Hex SHA-1 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, target: Path, sha1: Optional[str]) -> None:
    """Download `url` to a temp file beside `target`, check the hash, move it into place."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            _copy_url(url, out)
        got = sha1_file(tmp)
        if sha1 is not None and got != sha1:
            raise DataError(
                f"SHA-1 mismatch for {url}: expected {sha1}, got {got}. The download is "
                f"incomplete or the file changed upstream; nothing was written to {target.parent}. "
                "Try again, or fetch the file by hand and pass its path instead.")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _copy_url(url: str, out) -> None:
    """Stream `url` into the open binary file `out`; network failures become DataError."""
    try:
        with urllib.request.urlopen(url) as response:
            shutil.copyfileobj(response, out)
    except urllib.error.URLError as exc:
        raise DataError(f"could not download {url}: {exc.reason}. Check the network, or "
                        "download the file by hand and pass its path instead.") from None


def download(name: str, cache=None, url: Optional[str] = None, sha1: Optional[str] = None) -> Path:
    """Path of the cached file `name`, downloading it when absent or when its hash is wrong.

    `url` and `sha1` default to `DATA_HUB[name]`; the file is stored as the last part of the URL.
    """
    if url is None or sha1 is None:
        if name not in DATA_HUB:
            raise ValueError(f"unknown download {name!r}: choose one of {', '.join(DATA_HUB)} "
                             "or pass url= and sha1=")
        hub_url, hub_sha1 = DATA_HUB[name]
        url, sha1 = url or hub_url, sha1 or hub_sha1
    directory = Path(cache) if cache is not None else cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / url.rstrip("/").split("/")[-1]
    if target.is_file():
        if sha1_file(target) == sha1:
            return target
        target.unlink()  # corrupt or stale: never leave it behind, even if the download fails
    _fetch(url, target, sha1)
    return target


def extract_zip(path, member: str) -> Path:
    """Extract `member` of the zip at `path` next to it (atomically); return the extracted path.

    An already extracted file is returned as is.
    """
    path = Path(path)
    root = path.parent.resolve()
    target = (root / member).resolve()
    if root not in target.parents:
        raise DataError(f"zip member {member!r} would land outside {root}")
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(path) as archive, archive.open(member) as src:
            _write_atomic(src, target)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"cannot extract {member!r} from {path}: {exc}. Delete the zip and "
                        "download it again.") from None
    return target


def _write_atomic(src, target: Path) -> None:
    """Copy the stream `src` to `target` through a temp file in the same directory."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
