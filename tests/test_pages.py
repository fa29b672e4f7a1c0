"""The result pages under docs/ and the README's headlines are what the committed records
produce; the README stays short and names code that exists in every framework package."""
import ast
import re
from pathlib import Path

import pytest

from bench.pages import runner as pages, results as pages_results

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("torch_impl", "mxnet_impl", "jax_impl")


def test_pages_are_what_the_records_produce():
    stale = [str(p.relative_to(ROOT)) for p in pages.stale(ROOT)]
    assert stale == [], f"stale pages {stale}: run `rnnbench pages`"


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8")) < 8000


def test_a_changed_record_makes_its_page_stale(tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(f"# x\n{pages.BEGIN}\n{pages.END}\n", encoding="utf-8")
    value = {"n": 1}
    monkeypatch.setattr(pages, "PAGES", {"one.md": ("One", lambda r: (f"n={value['n']}", "h"))})
    monkeypatch.setattr(pages, "render_exercises", lambda r: ("ex", "e"))
    assert pages.main(tmp_path, check=False) == 0
    assert pages.stale(tmp_path) == []
    assert "- **One**: h. [docs/one.md](docs/one.md)" in (tmp_path / "README.md").read_text()
    value["n"] = 2
    assert pages.stale(tmp_path) == [tmp_path / "docs/one.md"]
    assert pages.main(tmp_path, check=True) == 1


def test_readme_without_headline_block_is_refused():
    with pytest.raises(ValueError, match="headline block"):
        pages.with_headlines("# no markers\n", ["- x"])


def test_rebase_moves_relative_links_only():
    md = "![a](x.png) [b](https://e.org) [c](#h) [d](sub/y.md)"
    assert pages_results.rebase(md, "results/r/") == (
        "![a](results/r/x.png) [b](https://e.org) [c](#h) [d](results/r/sub/y.md)")


def code_table():
    """(file, [function names]) for each row of the README's "Read the code" table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8").split("## Read the code", 1)[1]
    for row in re.findall(r"^\| [^|]+ \| (`[^|]+) \|$", text, flags=re.M):
        file, _, names = row.partition(":")
        yield file.strip("` "), re.findall(r"`(\w+)`", names)


def defined(path: Path) -> set:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


@pytest.mark.parametrize("package", PACKAGES)
def test_readme_code_table_names_exist(package):
    rows = list(code_table())
    assert len(rows) >= 10
    for file, names in rows:
        path = ROOT / package / file
        assert path.is_file(), f"README names {package}/{file}, which does not exist"
        missing = set(names) - defined(path)
        assert not missing, f"README names {sorted(missing)} in {package}/{file}: not defined"


def test_exercises_headline_counts_the_full_run_records(tmp_path):
    """The README's exercises line says how many of the full run's records exist, and says
    every one only when none is missing."""
    import shutil
    full = tmp_path / "exercises"
    full.mkdir()
    shutil.copy(ROOT / "docs/results/exercises/exercises.md", full)
    records = sorted((ROOT / "docs/results/exercises").glob("ex[0-9][0-9].json"))
    for path in records:
        shutil.copy(path, full)
    assert "every one of them recorded" in pages.render_exercises(tmp_path)[1]
    (full / records[0].name).unlink()
    head = pages.render_exercises(tmp_path)[1]
    assert f"{len(records) - 1} of {len(records)} recorded so far" in head
