"""`rnnbench pages`: the result pages under `docs/` and the README's headline lines, rendered
from the records committed under `docs/results/`, so that no figure is copied by hand.

`rnnbench pages` writes them; `rnnbench pages --check` (and a test) says which differ from what
the records produce.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Tuple

from bench.pages import results as res, speed as spd
from bench.core import records
from common import atomic

BEGIN, END = "<!-- headlines: written by `rnnbench pages` -->", "<!-- end of headlines -->"

# page file under docs/ -> (title of its headline, renderer)
PAGES: Dict[str, Tuple[str, Callable[[Path], res.Page]]] = {
    "parity.md": ("Parity", res.render_parity),
    "language-models.md": ("Language models", res.render_language_models),
    "fastbook.md": ("fastbook's ladder", res.render_fastbook),
    "translation.md": ("Translation", res.render_translation),
    "speed.md": ("Speed", spd.render_speed),
    "why-gluon-is-faster.md": ("Why Gluon's concise RNN is faster", spd.render_why),
}


def render_exercises(results: Path) -> res.Page:
    """An index of the exercise runs: per exercise, its question and each run's status."""
    from bench.exercises.runner import registry
    exercises = registry()
    runs = [d for d in ("exercises", "exercises-quick") if (results / d / "exercises.md").exists()]
    found = {d: {r["number"]: r for r in (records.read_json(p) for p in
                                           sorted((results / d).glob("ex[0-9][0-9].json")))}
             for d in runs}
    numbers = sorted(exercises)
    rows = ["| exercise | question | " + " | ".join(f"[{d}](results/{d}/exercises.md)"
                                                 for d in runs) + " |",
            "|---|---|" + "---|" * len(runs)]
    for n in numbers:
        ex = exercises[n]
        status = [found[d][n]["status"] if n in found[d] else "not run yet" for d in runs]
        rows.append(f"| {n}. {ex.section} | {ex.question} | " + " | ".join(status) + " |")
    body = ["# d2l's RNN exercises, answered by measurement", "",
            "`rnnbench exercises` runs one experiment per exercise in every framework and writes, "
            "for each, the question, the command that reproduces it, the table or plot across "
            "frameworks and an answer whose numbers are read from the run. `--quick` uses small "
            "sizes to check the machinery; the default uses the books' settings. `--only N ...` "
            "runs a subset and keeps the other exercises' earlier records.", "", "\n".join(rows), ""]
    full = len(found.get("exercises", {}))
    recorded = ("every one of them recorded" if full == len(numbers)
                else f"{full} of {len(numbers)} recorded so far")
    head = (f"{len(numbers)} exercises, each an experiment in every framework; the run with the "
            f"books' settings has {recorded}")
    return "\n".join(body), head


def render(root: Path) -> Dict[Path, str]:
    """Every page's text and the README with its headline block, keyed by path."""
    results, out, heads = root / "docs/results", {}, []
    pages = {**PAGES, "exercises.md": ("Exercises", render_exercises)}
    for name, (title, fn) in pages.items():
        text, head = fn(results)
        out[root / "docs" / name] = text.rstrip("\n") + "\n"
        heads.append(f"- **{title}**: {head}. [docs/{name}](docs/{name})")
    readme = root / "README.md"
    out[readme] = with_headlines(readme.read_text(encoding="utf-8"), heads)
    return out


def with_headlines(readme: str, heads: List[str]) -> str:
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README.md has no headline block: put the lines {BEGIN!r} and "
                         f"{END!r} where the headlines go")
    before, rest = readme.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    return before + BEGIN + "\n" + "\n".join(heads) + "\n" + END + after


def stale(root: Path) -> List[Path]:
    """The pages (and README) whose text differs from what the records produce."""
    return [p for p, text in render(root).items()
            if not p.exists() or p.read_text(encoding="utf-8") != text]


def main(root: Path, check: bool) -> int:
    if check:
        bad = stale(root)
        for p in bad:
            print(f"{p.relative_to(root)} differs from what the records produce: "
                  "run `rnnbench pages`")
        return 1 if bad else 0
    for path, text in render(root).items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic.write_text(path, text, overwrite=True)
            print(f"wrote {path.relative_to(root)}")
    return 0
