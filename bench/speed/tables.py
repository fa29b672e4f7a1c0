"""Speed records as tables: throughput per configuration, details, GEMM limits, bare loop, notes.

Every table is built from the records alone. The machine's GEMM limit on a device is the best
large square fp32 GEMM rate any framework reached there; the shape limit of a step is the time
its matrix products would take at the best rate measured for each of their shapes.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Tuple

from bench.core import status as S
from bench.speed import records as rec
from common.config import IMPLS
from common.flops import gemm_bound_seconds
from common.registry import backend_names

# a speed table's cell has room for "no device"; the other short forms are parity's
SHORT = {**{s: S.SHORT[s] for s in (S.NOT_SUPPORTED, S.ERROR, S.NOT_INSTALLED)},
         S.NO_DEVICE: "no device"}


def steps(records: Iterable[rec.Record]) -> List[rec.StepRecord]:
    """The newest step record of each case, in first-seen order."""
    return [r for r in rec.latest(records).values() if r.kind == "step"]


def of_kind(records, kind: str) -> list:
    return [r for r in rec.latest(records).values() if r.kind == kind]


def impl_label(case) -> str:
    return f"{case.backend}/{case.impl}"


def impl_order(rows: Iterable) -> List[str]:
    """torch, mxnet, jax; scratch, fast, builtin; only those present."""
    present = {impl_label(r.case) for r in rows}
    order = [f"{b}/{i}" for b in backend_names() for i in IMPLS]
    return [x for x in order if x in present] + sorted(present - set(order))


def size_label(case) -> str:
    return f"H={case.hidden} B={case.batch} T={case.steps} V={case.vocab}"


def cell_label(case) -> str:
    return case.cell if case.cell != "gru" or case.gru_variant == "reset_after" \
        else f"gru[{case.gru_variant}]"


def machine_peaks(records) -> Dict[str, float]:
    """Per device, the best GFLOP/s of the largest square GEMM measured there (any framework)."""
    squares = [g for g in of_kind(records, "gemm") if g.status == rec.OK and g.M == g.K == g.N]
    out = {}
    for device in dict.fromkeys(g.device for g in squares):
        mine = [g for g in squares if g.device == device]
        size = max(g.M for g in mine)
        out[device] = max(g.gflops_per_s for g in mine if g.M == size)
    return out


def shape_rates(records) -> Dict[Tuple[str, Tuple[int, int, int]], float]:
    """(device, (M, K, N)) -> the best GFLOP/s any framework's GEMM reached for that shape."""
    rates = {}
    for g in of_kind(records, "gemm"):
        if g.status == rec.OK:
            key = (g.device, (g.M, g.K, g.N))
            rates[key] = max(rates.get(key, 0.0), g.gflops_per_s)
    return rates


def machine_shape_fraction(r: rec.StepRecord, rates) -> Optional[float]:
    """The step's shape limit (best rate per shape, any framework) over its median time; none
    for a dtype other than the GEMMs' float32."""
    if r.case.dtype != "float32":
        return None
    try:
        bound = gemm_bound_seconds(r.case, lambda s: rates[(r.case.device, s)] * 1e9)
    except KeyError:
        return None
    return bound / r.timing["median_s"]


def _pct(x: Optional[float]) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def cell_text(r: Optional[rec.StepRecord], peaks) -> str:
    """`12.3k (41%)`: tokens/s and the fraction of the machine's GEMM rate; or a status."""
    if r is None:
        return ""
    if r.status != rec.OK:
        return SHORT.get(r.status, r.status)
    peak = peaks.get(r.case.device) if r.case.dtype == "float32" else None  # float32 GEMMs
    frac = f" ({_pct(r.gflops_per_s / peak)})" if peak else ""
    return f"{rate_text(r.tokens_per_s)}{frac}"


def rate_text(x: float) -> str:
    """`1.23M`, `45.6k` or `789`."""
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    return f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def throughput_groups(records) -> "OrderedDict":
    """(device, dtype, mode, size label) -> {(cell, impl label): record}."""
    groups = OrderedDict()
    for r in sorted(steps(records), key=lambda r: (r.case.device, r.case.mode != "train",
                                                   r.case.hidden, r.case.batch, r.case.steps)):
        c = r.case
        groups.setdefault((c.device, c.dtype, c.mode, size_label(c)), {})[
            (cell_label(c), impl_label(c))] = r
    return groups


def _grid(rows: List[List[str]], markdown: bool) -> str:
    if markdown:
        head, body = rows[0], rows[1:]
        lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(x.rjust(w) if i else x.ljust(w) for i, (x, w) in
                               enumerate(zip(row, widths))) for row in rows)


def throughput_tables(records, markdown: bool = True) -> str:
    """One table per (device, dtype, mode, size): cells down, implementations across, tokens/s
    and (in brackets) the fraction of the machine's large-GEMM rate."""
    peaks, parts = machine_peaks(records), []
    for (device, dtype, mode, size), entries in throughput_groups(records).items():
        labels = impl_order(entries.values())
        cells = list(dict.fromkeys(cell for cell, _ in entries))
        rows = [["cell", *labels]]
        rows += [[cell, *(cell_text(entries.get((cell, lab)), peaks) for lab in labels)]
                 for cell in cells]
        share = " (% of GEMM peak)" if dtype == "float32" else ""   # the GEMMs are float32
        title = f"{mode}, {size}, {dtype}, {device}: tokens/s{share}"
        parts.append((f"**{title}**\n\n" if markdown else f"{title}\n") + _grid(rows, markdown))
    return "\n\n".join(parts)


def detail_table(records) -> str:
    """Markdown: every step record with its timing, limits, threads and code path."""
    rates, peaks = shape_rates(records), machine_peaks(records)
    rows = [["backend/impl", "cell", "mode", "size", "device", "tokens/s", "median ms",
             "spread", "n", "compile s", "GFLOP/s", "% GEMM peak", "% shape limit",
             "threads busy (cpu/wall)", "code path"]]
    for r in steps(records):
        c = r.case
        if r.status != rec.OK:
            rows.append([impl_label(c), cell_label(c), c.mode, size_label(c), c.device,
                         SHORT.get(r.status, r.status), *[""] * 8, r.note.replace("|", "/")])
            continue
        t, peak = r.timing, peaks.get(c.device) if c.dtype == "float32" else None
        busy = r.threads_used.get("busy_threads")
        rows.append([impl_label(c), cell_label(c), c.mode, size_label(c),
                     f"{c.device} ({r.device_name})", f"{r.tokens_per_s:,.0f}",
                     f"{1e3 * t['median_s']:.2f}", f"{100 * t['iqr_over_median']:.0f}%",
                     str(t["repeats"]), f"{t['compile_s']:.2f}", f"{r.gflops_per_s:.3g}",
                     _pct(r.gflops_per_s / peak if peak else None),
                     _pct(machine_shape_fraction(r, rates)),
                     f"{busy} ({r.threads_used.get('cpu_per_wall')})", r.code_path])
    return _grid(rows, True)


def gemm_table(records) -> str:
    """Markdown: GFLOP/s of every fp32 GEMM shape, per framework op and device."""
    gemms = [g for g in of_kind(records, "gemm") if g.status == rec.OK]
    ops = list(dict.fromkeys(f"{g.backend} {g.op}" for g in gemms))
    shapes = OrderedDict()
    for g in sorted(gemms, key=lambda g: (g.device, g.M * g.K * g.N)):
        shapes.setdefault((g.device, g.M, g.K, g.N), {})[f"{g.backend} {g.op}"] = g.gflops_per_s
    rows = [["device", "(M, K) x (K, N)", *ops]]
    for (device, M, K, N), by_op in shapes.items():
        rows.append([device, f"({M}, {K}) x ({K}, {N})",
                     *(f"{by_op[o]:.3g}" if o in by_op else "" for o in ops)])
    return _grid(rows, True) if gemms else "No GEMM was measured."


def bare_loop_table(records) -> str:
    rows = [["case", "harness median ms", "harness mean ms", "same step, hand-timed ms",
             "plain loop ms", "steps x rounds", "harness overhead", "suite step vs plain"]]
    for b in of_kind(records, "bare-loop"):
        if b.status != rec.OK:
            rows.append([b.case.key, SHORT.get(b.status, b.status), *[""] * 5, b.note])
            continue
        rows.append([b.case.key, *(f"{1e3 * x:.2f}" for x in (
            b.harness_median_s, b.harness_mean_s, b.loop_s, b.bare_s)),
            f"{b.steps} x {b.rounds}", f"{100 * b.overhead:+.1f}%",
            f"{100 * b.step_vs_bare:+.1f}%"])
    return _grid(rows, True) if len(rows) > 1 else ""


def notes(records) -> Dict[str, List[str]]:
    """Reasons for every status other than OK, deduplicated, by status."""
    out = OrderedDict()
    for r in steps(records):
        if r.status != rec.OK:
            out.setdefault(r.status, OrderedDict()).setdefault(
                f"{impl_label(r.case)} {cell_label(r.case)} on {r.case.device}: {r.note}", None)
    return {k: list(v) for k, v in out.items()}
