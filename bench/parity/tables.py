"""Render parity records: terminal matrices and a markdown section."""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List

from bench.core import status as S
from bench.parity.harness import NOTE_SEP
from bench.parity.tolerances import describe as describe_tolerances

SHORT, RANK = S.SHORT, S.RANK


def is_distance(r) -> bool:
    """A reset_before-vs-built-in record (its labels name the variant in records written before
    the `comparison` field existed)."""
    return r.get("comparison", "pair") == "distance" or "[" in r["a"] + r["b"]


def _cell_label(r) -> str:
    if r.get("activation", "tanh") != "tanh":
        return f"{r['cell']}[{r['activation']}]"
    return f"gru[{r['variant']}]" if r["cell"] == "gru" else r["cell"]


def matrices(records: List[dict]) -> "OrderedDict":
    """{(cell label, dtype): {"labels": [...], "pairs": {(a, b): (status, max_abs)}}}.

    Each entry aggregates over layers and directions: the worst status and the largest error.
    """
    out = OrderedDict()
    for r in records:
        if is_distance(r):
            continue
        m = out.setdefault((_cell_label(r), r["dtype"]), {"labels": [], "pairs": {}})
        for label in (r["a"], r["b"]):
            if label not in m["labels"]:
                m["labels"].append(label)
        status, err = m["pairs"].get((r["a"], r["b"]), (S.PASS, 0.0))
        status = max(status, r["status"], key=RANK.index)
        m["pairs"][(r["a"], r["b"])] = (status, max(err, r["max_abs"] or 0.0))
    return out


def _entry(m, a, b) -> str:
    if a == b:
        return "—"
    pair = m["pairs"].get((a, b)) or m["pairs"].get((b, a))
    if pair is None:   # records from another run that did not compare these two
        return "?"
    status, err = pair
    if status in (S.PASS, S.FAIL, S.MEASURED):
        return f"{SHORT[status]} {err:.1e}"
    return SHORT[status]


LAYER_SCOPE = "layers 1,2 x uni/bi and all quantities"


def matrix_text(key, m, scope: str = LAYER_SCOPE) -> str:
    labels = m["labels"]
    width = max(14, max(len(x) for x in labels) + 1)
    head = f"{key[0]} {key[1]}: max abs error over {scope}"
    rows = [head, " " * width + "".join(f"{x:>{width}}" for x in labels)]
    for a in labels:
        rows.append(f"{a:<{width}}" + "".join(f"{_entry(m, a, b):>{width}}" for b in labels))
    return "\n".join(rows)


def matrix_markdown(key, m) -> str:
    labels = m["labels"]
    rows = [f"**{key[0]}, {key[1]}**", "", "| | " + " | ".join(labels) + " |",
            "|---" * (len(labels) + 1) + "|"]
    for a in labels:
        rows.append(f"| {a} | " + " | ".join(_entry(m, a, b) for b in labels) + " |")
    return "\n".join(rows)


def notes(records: List[dict]) -> Dict[str, List[str]]:
    """Not-supported reasons (deduplicated), failures, and the reset_before distances."""
    unsupported, failures, distances = OrderedDict(), [], []
    for r in records:
        case = f"{_cell_label(r)} L{r['layers']} {'bi' if r['bidirectional'] else 'uni'} {r['dtype']}"
        if r["status"] in (S.NOT_SUPPORTED, S.NOT_INSTALLED, S.NO_DEVICE, S.ERROR):
            for part in r["note"].split(NOTE_SEP):
                unsupported.setdefault(part, None)
        if r["status"] in S.FAILED:
            failures.append(f"{case}: {r['a']} vs {r['b']}: {r['status']} {r['note']}")
        if r["status"] == S.DIFFERENT_FUNCTION:
            out = r["errors"]["outputs"]
            distances.append(f"{case}: {r['a']} vs {r['b']}: outputs differ by up to "
                             f"{out['max_abs']:.3g} (normwise rel {out['max_rel']:.3g}); "
                             f"all quantities up to {r['max_abs']:.3g}")
    return {"not supported": list(unsupported), "failures": failures, "distances": distances}


def summary_counts(records: List[dict]) -> Dict[str, int]:
    counts = OrderedDict((s, 0) for s in RANK)
    for r in records:
        counts[r["status"]] += 1
    return {k: v for k, v in counts.items() if v}


def text_report(records: List[dict], scope: str = LAYER_SCOPE) -> str:
    parts = [matrix_text(k, m, scope) for k, m in matrices(records).items()]
    n = notes(records)
    legend = ("ok = PASS, m = measured with TF32 on (not judged), n/s = not supported, "
              "n/i = not installed, n/d = no such device, ERR = error")
    parts.append(legend)
    for title in ("not supported", "distances", "failures"):
        if n[title]:
            heading = {"not supported": "Not run (the adapter's own reason: not supported, "
                                        "not installed or no such device):",
                       "distances": "reset_before GRU vs the built-in (reset_after) on the same "
                                    "weights — different functions, reported, not failed:",
                       "failures": "FAILURES:"}[title]
            parts.append(heading + "\n" + "\n".join("  " + x for x in n[title]))
    parts.append("Totals: " + ", ".join(f"{k} {v}" for k, v in summary_counts(records).items()))
    return "\n\n".join(parts)


def worst_table(records: List[dict]) -> str:
    """Markdown: per cell, the largest error over every passing pair, per dtype, and the counts."""
    worst, counts = OrderedDict(), OrderedDict()
    for r in records:
        cell = _cell_label(r)
        counts.setdefault(cell, OrderedDict((s, 0) for s in RANK))[r["status"]] += 1
        if r["status"] == S.PASS:
            key = (cell, r["dtype"])
            worst[key] = max(worst.get(key, 0.0), r["max_abs"])
    dtypes = sorted({d for _, d in worst}, reverse=True)      # float64 first
    rows = ["| cell | " + " | ".join(f"worst {d} error" for d in dtypes) + " | pairs |",
            "|---" * (len(dtypes) + 2) + "|"]
    for cell, c in counts.items():
        errs = " | ".join(f"{worst[(cell, d)]:.1e}" if (cell, d) in worst else "—" for d in dtypes)
        rows.append(f"| {cell} | {errs} | " + ", ".join(f"{k} {v}" for k, v in c.items() if v) + " |")
    return "\n".join(rows)


def markdown_section(data: dict) -> str:
    """The parity section of the report, from a parity JSON document."""
    records = data["records"]
    env = data["environment"]
    tf32 = (" **TF32 on**: float32 GPU products used TF32, so the float32 entries show the "
            "error TF32 adds (marked m, not judged)." if env.get("tf32") else "")
    lines = ["## Parity" + (" with TF32 on" if env.get("tf32") else ""), "",
             f"Device: {env['device']}.{tf32} Sizes: {env['sizes']}. Every pair of implementations "
             "ran the same seeded canonical weights, inputs, initial states (zero and non-zero) "
             "and cotangents; entries are the largest absolute difference over outputs, final "
             "states and VJP gradients (parameters, inputs, initial state), over 1 and 2 layers, "
             "uni- and bidirectional.", "", "Tolerances:", "",
             *[f"- {line}" for line in describe_tolerances().splitlines()], "",
             "Totals: " + ", ".join(f"{k} {v}" for k, v in summary_counts(records).items()), "",
             worst_table(records), ""]
    for key, m in matrices(records).items():
        lines += [matrix_markdown(key, m), ""]
    n = notes(records)
    for title, items in n.items():
        if items:
            lines += [f"**{title.capitalize()}**", ""] + [f"- {x}" for x in items] + [""]
    return "\n".join(lines)
