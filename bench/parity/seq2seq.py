"""The seq2seq section of `rnnbench parity`: d2l 1.0's GRU encoder-decoder, the same canonical
parameters and batch in every (backend, impl).

Each implementation computes the teacher-forced logits, d2l's masked loss (labels padded past
their valid lengths), the loss's gradients with respect to every canonical parameter, and
greedy translations (ids and lengths, each row stopping at its `<eos>`). Every pair is compared
with `bench.parity.harness`'s records, tolerances and judge: logits, loss and greedy outputs as values,
gradients as gradients. Greedy ids must match exactly in effect (any token apart exceeds every
tolerance). A built-in's NotSupported (reset_before) is recorded, and each framework's scratch
reset_before model is measured against its built-in on the same weights, as for layers.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict
from typing import List, Optional

import numpy as np

from bench.core import status as S
from bench.parity.harness import Case, ImplResult, PairRecord, attempt, compare
from common.registry import backend_names, get_module
from common.seq2seq import SEQ2SEQ_IMPLS, Seq2SeqConfig, init_seq2seq_params

# Distinct sizes, so that a transposed or misplaced weight cannot fit (E + H = 12 too).
SIZES = {"Vs": 11, "Vt": 13, "E": 5, "H": 7, "L": 2, "B": 3, "Ts": 6, "T": 5, "greedy_steps": 6}
PAD, BOS, EOS = 1, 2, 3   # common.corpora's reserved ids after <unk> = 0
# Seed and a bias added to b_q[<eos>] found by a search so that greedy rows stop at different
# steps (some at once, some never), every greedy decision winning by a margin of 0.09 or more
# (float32 rounding is ~1e-6): both GRU variants.
SEED, EOS_BIAS = 30, 0.65
VARIANTS = ("reset_after", "reset_before")
SCOPE = "logits, masked loss, greedy ids and lengths, and gradients of the loss"


def default_cases(dtypes=("float64", "float32")) -> List[Case]:
    """Both GRU variants in every dtype (a 2-layer encoder and decoder)."""
    return [Case("gru", v, SIZES["L"], False, dt) for dt in dtypes for v in VARIANTS]


def config(case: Case, impl: str, variant: Optional[str] = None) -> Seq2SeqConfig:
    s = SIZES
    return Seq2SeqConfig(impl, s["Vs"], s["Vt"], s["E"], s["H"], s["L"], variant or case.variant)


def _padded(rng, rows: int, cols: int, vocab: int, valid: np.ndarray) -> np.ndarray:
    """Rows of random word ids (>= 4) ending in `<eos>` at valid - 1, then `<pad>`."""
    ids = rng.integers(4, vocab, (rows, cols))
    ids[np.arange(rows), valid - 1] = EOS
    ids[np.arange(cols)[None, :] >= valid[:, None]] = PAD
    return ids


def case_inputs(case: Case, seed: int = SEED) -> dict:
    """Parameters (d2l's Xavier init) and a batch shaped as the data layer gives it."""
    s, rng = SIZES, np.random.default_rng([seed, 6])
    params = init_seq2seq_params(config(case, "scratch"), seed, case.dtype)
    params["decoder.b_q"][EOS] += EOS_BIAS
    label_valid_len = np.array([s["T"], 3, 1])
    label = _padded(rng, s["B"], s["T"], s["Vt"], label_valid_len)
    dec_in = np.concatenate([np.full((s["B"], 1), BOS), label[:, :-1]], axis=1)  # teacher forcing
    src = _padded(rng, s["B"], s["Ts"], s["Vs"], np.array([s["Ts"], 4, 2]))
    return {"params": params, "src": src, "dec_in": dec_in, "label": label,
            "label_valid_len": label_valid_len}


def compute(mod, model, inputs) -> dict:
    """Every compared quantity, flattened into `group.name` arrays."""
    src, dec_in = inputs["src"], inputs["dec_in"]
    loss, grads = mod.loss_grads(model, src, dec_in, inputs["label"], inputs["label_valid_len"])
    ids, lengths = mod.greedy(model, src, BOS, EOS, SIZES["greedy_steps"])
    arrays = {"outputs.logits": mod.forward(model, src, dec_in), "outputs.loss": np.array(loss),
              "outputs.greedy_ids": ids, "outputs.greedy_lengths": lengths}
    arrays.update({f"grad_params.{k}": v for k, v in grads.items()})
    return {k: np.asarray(v) for k, v in arrays.items()}


def run_impl(backend: str, impl: str, case: Case, inputs: dict, device: str = "cpu",
             variant: Optional[str] = None) -> ImplResult:
    """One implementation on a case; NotSupported and other errors become statuses."""
    label = f"{backend}/{impl}" + (f"[{variant}]" if variant else "")

    def arrays():
        mod = get_module(backend, "seq2seq")
        model = mod.build_seq2seq(config(case, impl, variant), inputs["params"], case.dtype, device)
        return compute(mod, model, inputs)
    return attempt(label, arrays)


def case_records(case: Case, backends, device: str) -> List[PairRecord]:
    """Every implementation on a case, every pair compared; reset_before vs the built-ins."""
    inputs = case_inputs(case)
    results = [run_impl(be, impl, case, inputs, device) for be in backends
               for impl in SEQ2SEQ_IMPLS]
    records = [compare(case, a, b, device) for a, b in itertools.combinations(results, 2)]
    if case.variant == "reset_before":
        scratch = [r for r in results if r.label.endswith("/scratch")]
        for be, own in zip(backends, scratch):
            builtin = run_impl(be, "builtin", case, inputs, device, variant="reset_after")
            records.append(compare(case, _without_greedy(own), _without_greedy(builtin), device,
                                   different_function=True))
    return records


def _without_greedy(result: ImplResult) -> ImplResult:
    """The result less its greedy ids and lengths: a distance between two different functions
    is read off the logits, loss and gradients (token ids are no distance)."""
    arrays = {k: v for k, v in result.arrays.items() if ".greedy_" not in k}
    return ImplResult(result.label, result.status, result.message, arrays)


def run(dtypes, backends=None, device: str = "cpu", progress=None) -> List[PairRecord]:
    """Every case's records; `progress(case)` after each case."""
    records = []
    for case in default_cases(dtypes):
        records.extend(case_records(case, list(backends or backend_names()), device))
        if progress:
            progress(case)
    return records


def failed(records: List[PairRecord]) -> List[PairRecord]:
    return [r for r in records if r.status in S.FAILED]


def to_json(records: List[PairRecord]) -> dict:
    return {"sizes": dict(SIZES), "seed": SEED, "eos_bias": EOS_BIAS,
            "records": [asdict(r) for r in records]}


def text_section(records: List[dict]) -> str:
    """The terminal report of the seq2seq records."""
    from bench.parity.tables import text_report
    return "Seq2seq (GRU encoder-decoder, 2 layers):\n\n" + text_report(records, SCOPE)


def markdown_section(doc: dict) -> str:
    """The markdown section, from `to_json`'s document."""
    from bench.parity.tables import matrices, matrix_markdown, notes, summary_counts
    records = doc["records"]
    lines = ["## Parity: seq2seq", "",
             f"d2l 1.0's GRU encoder-decoder, sizes {doc['sizes']}, seed {doc['seed']} "
             f"(`<eos>` logit bias +{doc['eos_bias']} so that greedy rows stop at different "
             "steps). Every pair ran "
             "the same canonical parameters and batch; entries are the largest absolute "
             f"difference over {SCOPE}. Tolerances as above.", "",
             "Totals: " + ", ".join(f"{k} {v}" for k, v in summary_counts(records).items()), ""]
    for key, m in matrices(records).items():
        lines += [matrix_markdown(key, m), ""]
    for title, items in notes(records).items():
        if items:
            lines += [f"**{title.capitalize()}**", ""] + [f"- {x}" for x in items] + [""]
    return "\n".join(lines)
