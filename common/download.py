"""Download corpora into a local cache with pooch, checking their SHA-1 as d2l's `download` does.

pooch keeps the cache: a download goes to a temporary file and is moved into place only after
its hash matched, a cached file whose hash is wrong is fetched again, and an archive's members
are extracted again whenever the archive was (re)downloaded. On top of that, every use checks
the cached file's hash and each extracted member's CRC-32 against the archive, and says on
stderr when it replaces a damaged file: nothing damaged is used, nothing is replaced silently.
Fetching goes through urllib (so `file://` addresses work too).
"""
from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
import zipfile
import zlib
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


def note(message: str) -> None:
    """A one-line notice on stderr (what the cache did on the user's behalf)."""
    sys.stderr.write(f"rnnbench: {message}\n")


class _Fetcher:
    """pooch's downloader: urllib into pooch's temporary file; remembers the bytes' SHA-1."""

    def __init__(self):
        self.sha1 = None

    def __call__(self, url, output_file, pooch_obj=None, check_only=False):
        digest = hashlib.sha1()
        with open(output_file, "wb") as out:
            for block in _stream(url):
                digest.update(block)
                out.write(block)
        self.sha1 = digest.hexdigest()


def _stream(url: str):
    """The bytes at `url` in 1 MiB blocks; network failures become DataError."""
    try:
        with urllib.request.urlopen(url) as response:
            yield from iter(lambda: response.read(1 << 20), b"")
    except urllib.error.URLError as exc:
        raise DataError(f"could not download {url}: {exc.reason}. Check the network, or "
                        "download the file by hand and pass its path instead.") from None


def _hub(name: str, url: Optional[str], sha1: Optional[str]):
    if url is not None and sha1 is not None:
        return url, sha1
    if name not in DATA_HUB:
        raise ValueError(f"unknown download {name!r}: choose one of {', '.join(DATA_HUB)} "
                         "or pass url= and sha1=")
    hub_url, hub_sha1 = DATA_HUB[name]
    return url or hub_url, sha1 or hub_sha1


def download(name: str, cache=None, url: Optional[str] = None, sha1: Optional[str] = None) -> Path:
    """Path of the cached file `name`, downloading it when absent or when its hash is wrong.

    `url` and `sha1` default to `DATA_HUB[name]`; the file is stored as the last part of the URL.
    A damaged cached file is reported on stderr and removed before it is fetched again.
    """
    import pooch
    url, sha1 = _hub(name, url, sha1)
    directory = Path(cache) if cache is not None else cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / url.rstrip("/").split("/")[-1]
    if target.is_file() and (got := sha1_file(target)) != sha1:
        note(f"the cached {target} is damaged or stale (SHA-1 {got}, expected {sha1}): "
             "removed, downloading it again")
        target.unlink()  # never left behind, even if the download fails
    fetch = _Fetcher()
    pooch.get_logger().setLevel("WARNING")
    try:
        got = pooch.retrieve(url, f"sha1:{sha1}", fname=target.name, path=directory,
                             downloader=fetch, progressbar=False)
    except ValueError as exc:
        if fetch.sha1 is None or "hash" not in str(exc):
            raise
        raise DataError(
            f"SHA-1 mismatch for {url}: expected {sha1}, got {fetch.sha1}. The download is "
            f"incomplete or the file changed upstream; nothing was written to {directory}. "
            "Try again, or fetch the file by hand and pass its path instead.") from None
    return Path(got)


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            crc = zlib.crc32(block, crc)
    return crc


def _member_info(path: Path, member: str) -> zipfile.ZipInfo:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.getinfo(member)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise DataError(f"cannot extract {member!r} from {path}: {exc}. Delete the zip and "
                        "download it again.") from None


def extract_zip(path, member: str) -> Path:
    """`member` of the zip at `path`, extracted by pooch's `Unzip` into `<zip>.unzip/`.

    An extracted file is reused only while its CRC-32 matches the archive's record of it (so a
    replaced archive or a damaged or edited extraction is extracted again, with a note).
    """
    import pooch
    path = Path(path)
    root = Path(str(path) + ".unzip").resolve()
    target = (root / member).resolve()
    if root not in target.parents:
        raise DataError(f"zip member {member!r} would land outside {root}")
    info = _member_info(path, member)
    if target.is_file() and _crc32(target) == info.CRC:
        return target
    if target.exists():
        note(f"{target} does not match {path.name}'s {member}: extracting it again")
    try:
        pooch.Unzip(members=[member])(os.fspath(path), "update", None)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"cannot extract {member!r} from {path}: {exc}. Delete the zip and "
                        "download it again.") from None
    if _crc32(target) != info.CRC:
        raise DataError(f"{member!r} in {path} fails its CRC-32 check: the archive is damaged; "
                        "delete it and download it again")
    return target
