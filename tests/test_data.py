"""The download cache (local file:// URLs, no network) and the data layer's import hygiene."""
import hashlib
import subprocess
import sys
import zipfile

import pytest

from common import corpora, download as dl
from common.errors import DataError

from conftest import ROOT

CONTENT = b"a small file standing in for a corpus\n"
GOOD_SHA1 = hashlib.sha1(CONTENT).hexdigest()


@pytest.fixture
def source(tmp_path):
    """A file served through a file:// URL: (url, sha1)."""
    path = tmp_path / "upstream" / "corpus.txt"
    path.parent.mkdir()
    path.write_bytes(CONTENT)
    return path.as_uri(), GOOD_SHA1


def cache_files(cache):
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


@pytest.mark.parametrize("name, url, sha1", [
    ("time_machine", "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt",
     "090b5e7e70c295757f55df93cb0a180b9691891a"),
    ("fra-eng", "http://d2l-data.s3-accelerate.amazonaws.com/fra-eng.zip",
     "94646ad1522d915e7b0f9296181140edcf86a4f5"),
], ids=["time_machine", "fra-eng"])
def test_data_hub_has_d2l_addresses(name, url, sha1):
    assert dl.DATA_HUB[name] == (url, sha1)


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNBENCH_CACHE", str(tmp_path / "c"))
    assert dl.cache_dir() == tmp_path / "c"


def test_cache_dir_default_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("RNNBENCH_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert dl.cache_dir() == tmp_path / ".cache" / "rnnbench"


def test_sha1_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(CONTENT)
    assert dl.sha1_file(path) == GOOD_SHA1


def test_download_stores_file_with_matching_hash(source, tmp_path):
    url, sha1 = source
    path = dl.download("x", cache=tmp_path / "cache", url=url, sha1=sha1)
    assert path == tmp_path / "cache" / "corpus.txt"
    assert path.read_bytes() == CONTENT
    assert cache_files(tmp_path / "cache") == ["corpus.txt"]


def test_download_uses_cache_without_fetching(source, tmp_path):
    url, sha1 = source
    dl.download("x", cache=tmp_path / "cache", url=url, sha1=sha1)
    gone = url.replace("corpus.txt", "missing/corpus.txt")  # would fail if fetched
    assert dl.download("x", cache=tmp_path / "cache", url=gone, sha1=sha1).read_bytes() == CONTENT


def test_download_wrong_sha1_raises_and_leaves_nothing(source, tmp_path):
    url, _ = source
    with pytest.raises(DataError, match=f"expected {'0' * 40}, got {GOOD_SHA1}"):
        dl.download("x", cache=tmp_path / "cache", url=url, sha1="0" * 40)
    assert cache_files(tmp_path / "cache") == []


def test_download_replaces_corrupt_cached_file(source, tmp_path):
    url, sha1 = source
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "corpus.txt").write_bytes(b"truncated")
    assert dl.download("x", cache=cache, url=url, sha1=sha1).read_bytes() == CONTENT


def test_corrupt_cached_file_is_removed_when_redownload_fails(source, tmp_path):
    url, _ = source
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "corpus.txt").write_bytes(b"truncated")
    with pytest.raises(DataError):
        dl.download("x", cache=cache, url=url, sha1="0" * 40)
    assert cache_files(cache) == []


def test_download_unreachable_url_raises_data_error(tmp_path):
    url = (tmp_path / "nowhere.txt").as_uri()
    with pytest.raises(DataError, match="could not download"):
        dl.download("x", cache=tmp_path / "cache", url=url, sha1=GOOD_SHA1)
    assert cache_files(tmp_path / "cache") == []


def test_download_unknown_name_without_url_lists_known(tmp_path):
    with pytest.raises(ValueError, match="time_machine"):
        dl.download("nope", cache=tmp_path)


def make_zip(path, member, data):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, data)
    return path


def test_extract_zip_member(tmp_path):
    archive = make_zip(tmp_path / "a.zip", "fra-eng/fra.txt", "Go.\tVa !\n")
    out = dl.extract_zip(archive, "fra-eng/fra.txt")
    assert out == (tmp_path / "a.zip.unzip" / "fra-eng" / "fra.txt").resolve()
    assert out.read_text() == "Go.\tVa !\n"


def test_extract_zip_missing_member_raises_and_leaves_nothing(tmp_path):
    archive = make_zip(tmp_path / "a.zip", "other.txt", "x")
    with pytest.raises(DataError, match="fra.txt"):
        dl.extract_zip(archive, "fra-eng/fra.txt")
    assert not (tmp_path / "a.zip.unzip").exists()


def test_extract_zip_refuses_member_outside_directory(tmp_path):
    archive = make_zip(tmp_path / "a.zip", "x.txt", "x")
    with pytest.raises(DataError, match="outside"):
        dl.extract_zip(archive, "../x.txt")


def test_read_fra_eng_downloads_and_extracts(monkeypatch, tmp_path):
    archive = make_zip(tmp_path / "fra-eng.zip", "fra-eng/fra.txt", "Go.\tVa !\n")
    monkeypatch.setitem(dl.DATA_HUB, "fra-eng", (archive.as_uri(), dl.sha1_file(archive)))
    monkeypatch.setenv("RNNBENCH_CACHE", str(tmp_path / "cache"))
    assert corpora.read_fra_eng() == "Go.\tVa !\n"
    assert (tmp_path / "cache" / "fra-eng.zip.unzip" / "fra-eng" / "fra.txt").is_file()


def test_read_time_machine_downloads(monkeypatch, tmp_path, source):
    url, sha1 = source
    monkeypatch.setitem(dl.DATA_HUB, "time_machine", (url, sha1))
    monkeypatch.setenv("RNNBENCH_CACHE", str(tmp_path / "cache"))
    assert corpora.read_time_machine() == CONTENT.decode()


def test_data_layer_imports_no_framework():
    code = ("import sys, common.corpora, common.batching, common.vocab, common.metrics, "
            "common.download; print(sorted({m.split('.')[0] for m in sys.modules} "
            "& {'torch', 'mxnet', 'jax', 'flax', 'tensorflow'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
