"""The `rnnbench parity` verb's work: run the layer and seq2seq cases, print the tables, write
parity.json and parity.md."""
from __future__ import annotations

from pathlib import Path

from bench.core import records as rec
from bench.core.progress import tqdm
from bench.parity import harness as parity, seq2seq as s2s, tables
from common import atomic


def main(quick: bool, backends, dtypes, device: str, out: Path) -> int:
    """The `rnnbench parity` verb: run, print, write JSON and markdown; 1 on any FAIL."""
    for name in ("parity.json", "parity.md"):   # fail before the work, not after it
        if (out / name).exists():
            raise FileExistsError(f"{out / name} exists; choose another --out")
    cases = parity.default_cases(quick=quick, dtypes=dtypes)
    bar = tqdm(total=len(cases) + len(s2s.default_cases(dtypes)), desc="parity", unit="case",
               leave=False)
    progress = lambda c: (bar.set_postfix_str(c.label), bar.update(1))
    run = parity.run(cases, backends, device, progress=progress)
    seq2seq = s2s.run(dtypes, backends, device, progress=progress)
    bar.close()
    doc = run.to_json()
    doc["seq2seq"] = s2s.to_json(seq2seq)
    json_path = rec.write_json(out / "parity.json", doc)
    md = tables.markdown_section(doc) + "\n" + s2s.markdown_section(doc["seq2seq"]) + "\n"
    md_path = atomic.write_text(out / "parity.md", md)
    print(tables.text_report(doc["records"]))
    print("\n" + s2s.text_section(doc["seq2seq"]["records"]))
    print(f"\nwrote {json_path} and {md_path}")
    return 1 if run.failed or s2s.failed(seq2seq) else 0
