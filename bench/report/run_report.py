"""`rnnbench report DIR`: one markdown report with PNG charts from a results directory.

It reads what it finds: `speed.jsonl` (throughput tables and bars, scaling curves over H, T, B,
GEMM limits, the bare-loop comparison, every record in detail), `parity.json` (the parity
matrices, as in `parity.md`, and a heat map), and the explain ladder's `explain.json` and
`why-gluon-is-faster.md` (in DIR or one directory below; linked, the markdown included).
Everything is written atomically; a rerun replaces the report.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from bench.core import records as files
from bench.speed import charts as plots, records as rec
from bench.speed import tables
from bench.speed.grid import SWEEPS
from common import atomic
from common.errors import DataError, RnnbenchError

REPORT = "report.md"
EXPLAIN_FILES = ("explain.json", "why-gluon-is-faster.md")


def find(directory: Path, name: str) -> Optional[Path]:
    """`directory/name`, else the first `directory/*/name`."""
    if (directory / name).exists():
        return directory / name
    return next(iter(sorted(directory.glob(f"*/{name}"))), None)


def _image(path: Optional[Path], directory: Path, alt: str) -> List[str]:
    return [f"![{alt}]({path.relative_to(directory)})", ""] if path else []


def environment_section(records) -> List[str]:
    envs = tables.of_kind(records, "env")
    if not envs:
        return []
    lines = ["### Environment", "", "| framework | versions | CPU | CPU affinity | threads "
             "(asked / framework's own) | GPUs seen | load average at start |",
             "|---|---|---|---|---|---|---|"]
    for e in envs:
        versions = ", ".join(f"{k} {v}" for k, v in e.versions.items() if v)
        own = ", ".join(f"{k}={v}" for k, v in e.threads_used.items())
        load = " / ".join(f"{x:.1f}" for x in e.load_average) or "?"
        lines.append(f"| {e.backend} | {versions} | {e.cpu_name} | {len(e.cpu_affinity)} CPUs | "
                     f"{e.threads} / {own} | {', '.join(e.gpu_names) or 'none'} | {load} |")
    busy = [e for e in envs if e.load_average and e.load_average[0] > (e.cpu_count or 1)]
    if busy:
        lines += ["", f"**The machine was busy** (load average {busy[0].load_average[0]:.1f} on "
                  f"{busy[0].cpu_count} CPUs when {busy[0].backend} started): other "
                  "processes shared the cores, and OpenMP thread teams (PyTorch, MXNet) stall "
                  "whenever one of their threads waits for a core. Treat these figures as "
                  "noise; measure on a quiet machine (or with `--threads 1`)."]
    return lines + [""]


def speed_charts(records, directory: Path) -> List[str]:
    lines = []
    runs = {(r.case.device, r.case.mode) for r in tables.steps(records)}
    for device, mode in sorted(runs, key=lambda x: (x[0], x[1] != "train")):
        png = plots.throughput_chart(records, device, mode,
                                     directory / f"speed-{device}-{mode}.png")
        lines += _image(png, directory, f"throughput, {mode} on {device}")
    for axis in SWEEPS:
        for device, mode in sorted(runs, key=lambda x: (x[0], x[1] != "train")):
            png = plots.scaling_chart(records, axis, device, mode,
                                      directory / f"scaling-{axis}-{device}-{mode}.png")
            lines += _image(png, directory, f"scaling over {axis}, {mode} on {device}")
    return lines


def bars_section(records) -> List[str]:
    """The bars for `fast` at d2l's sizes and the floors measured beside them, where the run
    has the timings."""
    from bench.speed import bars
    lines, judged, floors = [], bars.bars_markdown(records), bars.floor_table(records)
    if judged:
        lines += ["### The bars for `fast`", "", "Ratios of training tokens/s from this run, "
                  "with the spreads of the two timings (inter-quartile range over median):", "",
                  judged, ""]
    if floors:
        lines += ["### The floor under `fast`", "", "Each `fast` training step's matrix "
                  "products alone, run the framework's fastest way and timed as the step is "
                  "(median step time): no scratch step can be faster.", "", floors, ""]
    return lines


def speed_section(records, directory: Path) -> List[str]:
    lines = ["## Speed", "",
             "Tokens per second (batch x steps per timed call) of one training step (forward, "
             "cross-entropy over the vocabulary, backward, d2l's clipping, SGD) and of inference "
             "(forward only). Each framework ran in its own process with the same thread count; "
             "first calls (compile, trace, hybridize) are reported apart; every timed region "
             "ends with the framework's synchronisation. In brackets: the step's GFLOP/s "
             "(matrix products only, backward = 2x forward; `common/flops.py`) as a fraction "
             "of the best large square fp32 GEMM any framework reached on the device.", "",
             *environment_section(records), tables.throughput_tables(records), ""]
    lines += speed_charts(records, directory)
    for status, items in tables.notes(records).items():
        lines += [f"**{status.capitalize()}**", ""] + [f"- {x}" for x in items] + [""]
    lines += ["### The machine's GEMM limit", "",
              "fp32 GEMM GFLOP/s for the shapes the steps run, with each framework's own product "
              "(MXNet: `nd.dot`, its bundled OpenBLAS, and `FullyConnected`, oneDNN):", "",
              tables.gemm_table(records), ""]
    lines += bars_section(records)
    bare = tables.bare_loop_table(records)
    if bare:
        lines += ["### Harness overhead", "", "The harness's figure beside the same step timed "
                  "by hand (`time.perf_counter` around N steps, one sync at the end: the "
                  "harness's own overhead) and beside a hand-written plain PyTorch loop "
                  "(`nn.LSTM`, `nn.Linear`, `clip_grad_norm_`, `SGD`: what the suite's step "
                  "adds); best of alternating rounds:", "", bare, ""]
    lines += ["### Every record", "", "`% shape limit`: the time the step's matrix products "
              "would take at the best rate measured for each of their shapes, over the step's "
              "median time.", "", tables.detail_table(records), ""]
    return lines


def parity_section(path: Path, directory: Path) -> List[str]:
    doc = files.read_json(path, "a parity.json written by `rnnbench parity`")
    try:
        return _parity_lines(doc, path, directory)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        raise DataError(f"{path} does not hold parity results as `rnnbench parity` writes them "
                        f"({type(exc).__name__}: {exc}); run `rnnbench parity --out DIR` "
                        "again") from None


def _parity_lines(doc, path: Path, directory: Path) -> List[str]:
    from bench.parity import chart, seq2seq, tables
    rel = path.relative_to(directory)
    lines = [tables.markdown_section(doc), f"Source: [{rel}]({rel}).", ""]
    png = chart.parity_chart(tables.matrices(doc["records"]),
                             directory / "parity-matrix.png")
    lines += _image(png, directory, "parity matrix")
    if "seq2seq" in doc:
        lines.append(seq2seq.markdown_section(doc["seq2seq"]))
    return lines


def explain_section(directory: Path) -> List[str]:
    found = {name: find(directory, name) for name in EXPLAIN_FILES}
    if not any(found.values()):
        return []
    lines = ["## Why the frameworks differ (the explain ladder)", ""]
    lines += [f"- [{p.relative_to(directory)}]({p.relative_to(directory)})"
              for p in found.values() if p] + [""]
    home = next(p for p in found.values() if p).parent
    for png in sorted(home.glob("explain*.png")):
        lines += _image(png, directory, png.stem)
    md = found["why-gluon-is-faster.md"]
    if md:
        lines += demote_headings(md.read_text().strip().splitlines())
    return lines + [""]


def demote_headings(lines: List[str], levels: int = 2) -> List[str]:
    """Markdown headings `levels` deeper (outside fenced code blocks), to nest a document."""
    out, fenced = [], False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        out.append("#" * levels + line if line.startswith("#") and not fenced else line)
    return out


def skipped_section(skipped: List[str]) -> List[str]:
    if not skipped:
        return []
    return (["**Lines skipped** (not complete records; their cases are missing below):", ""]
            + [f"- `{line}`" for line in skipped] + [""])


def build(directory: Path) -> str:
    """The report's markdown (writing its charts into `directory` as it goes)."""
    records, skipped = rec.read_checked(directory / rec.FILENAME)
    parity = find(directory, "parity.json")
    body = speed_section(records, directory) if records else []
    if parity:
        body += parity_section(parity, directory)
    body += explain_section(directory)
    if not body:
        raise RnnbenchError(f"{directory} holds no speed.jsonl, parity.json or explain files: "
                            "run `rnnbench speed --out DIR` (or parity, explain) first")
    parts = ["# rnnbench report", "", f"Results directory: `{directory}`.", ""]
    return "\n".join(parts + skipped_section(skipped) + body) + "\n"


def main(directory: Path) -> int:
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no results directory {directory}")
    path = atomic.write_text(directory / REPORT, build(directory), overwrite=True)
    print(f"report: {path}")
    return 0
