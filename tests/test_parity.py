"""The parity harness: it passes on correct code, fails on a corrupted conversion, shows NotSupported."""
import json

import numpy as np
import pytest

from bench.parity import harness as parity, runner as parity_runner, tables as parity_tables
from bench.parity.harness import Case, ImplResult
from conftest import backend_or_skip

LSTM64 = Case("lstm", "reset_after", 1, False, "float64")


@pytest.mark.parametrize("backend", ["torch", "mxnet", "jax"])
def test_harness_passes_every_impl_pair(backend):
    backend_or_skip(backend)
    records = parity.case_records(LSTM64, [backend], "cpu")
    assert [(r.a, r.b, r.status) for r in records] == [
        (f"{backend}/scratch", f"{backend}/fast", "PASS"),
        (f"{backend}/scratch", f"{backend}/builtin", "PASS"),
        (f"{backend}/fast", f"{backend}/builtin", "PASS")]
    assert max(r.max_abs for r in records) < 1e-12


# The fast stack against d2l's scratch and the built-in on the cases it is most likely to get
# wrong (GRU's b_hn, a reversed direction, a second layer fed by the first), both dtypes.
FAST_CASES = [Case(c, v, n, bi, dt) for dt in ("float64", "float32")
              for c, v, n, bi in [("rnn", "reset_after", 2, True), ("gru", "reset_after", 2, True),
                                  ("gru", "reset_before", 1, True), ("lstm", "reset_after", 2, False)]]


@pytest.mark.parametrize("backend", ["torch", "mxnet", "jax"])
@pytest.mark.parametrize("case", FAST_CASES, ids=[c.label.replace(" ", "-") for c in FAST_CASES])
def test_fast_passes_parity(backend, case):
    backend_or_skip(backend)
    records = parity.case_records(case, [backend], "cpu")
    fast = {(r.a, r.b): r for r in records if f"{backend}/fast" in (r.a, r.b)}
    scratch_fast = fast.pop((f"{backend}/scratch", f"{backend}/fast"))
    assert scratch_fast.status == "PASS", scratch_fast.note
    builtin = fast[(f"{backend}/fast", f"{backend}/builtin")]
    expected = "NOT SUPPORTED" if case.variant == "reset_before" else "PASS"
    assert builtin.status == expected, builtin.note


@pytest.mark.parametrize("backend,module", [("torch", "torch_impl.convert"),
                                            ("mxnet", "mxnet_impl.convert"),
                                            ("jax", "jax_impl.convert")])
def test_swapped_gates_in_conversion_fail(backend, module, monkeypatch):
    """Swap the input and forget gates in the built-in's gate table: parity must report FAIL."""
    backend_or_skip(backend)
    convert = pytest.importorskip(module)
    gates = convert.NATIVE_GATES["lstm"]
    swapped = tuple({"i": "f", "f": "i"}.get(g, g) for g in gates)
    monkeypatch.setitem(convert.NATIVE_GATES, "lstm", swapped)
    records = parity.case_records(LSTM64, [backend], "cpu")
    assert [r.status for r in records] == ["PASS", "FAIL", "FAIL"]   # scratch-fast, x-builtin
    assert "worst group" in records[1].note


def test_reset_before_is_not_supported_by_builtins_and_measured():
    backend_or_skip("torch")
    records = parity.case_records(Case("gru", "reset_before", 1, False, "float64"), ["torch"], "cpu")
    statuses = {(r.a, r.b): r.status for r in records}
    assert statuses[("torch/scratch", "torch/builtin")] == "NOT SUPPORTED"
    assert statuses[("torch/scratch", "torch/fast")] == "PASS"
    diff = records[-1]
    assert diff.status == "DIFFERENT FUNCTION" and diff.b == "torch/builtin[reset_after]"
    assert diff.errors["outputs"]["max_abs"] > 1e-3   # really a different function


def _result(label, value):
    return ImplResult(label, "ok", arrays={"outputs.zero": np.array([value, 1.0]),
                                           "grad_params.l0.W": np.array([10.0])})


@pytest.mark.parametrize("dtype,delta,status", [
    ("float64", 5e-10, "PASS"), ("float64", 2e-9, "FAIL"),
    ("float32", 5e-6, "PASS"), ("float32", 5e-5, "FAIL")])
def test_tolerances_decide(dtype, delta, status):
    case = Case("rnn", "reset_after", 1, False, dtype)
    rec = parity.compare(case, _result("a", 0.5 + delta), _result("b", 0.5), "cpu")
    assert rec.status == status
    assert rec.max_abs == pytest.approx(delta, rel=1e-3)


def test_errors_and_missing_frameworks_are_not_passes():
    case = Case("rnn", "reset_after", 1, False, "float64")
    ok = _result("a", 0.5)
    missing = ImplResult("x/builtin", "not installed", "pip install 'rnnbench[x]'")
    broken = ImplResult("y/builtin", "error", "RuntimeError: boom")
    assert parity.compare(case, ok, missing, "cpu").status == "NOT INSTALLED"
    assert parity.compare(case, ok, broken, "cpu").status == "ERROR"


def test_quick_cases_are_a_subset():
    quick, full = parity.default_cases(quick=True), parity.default_cases()
    assert set(quick) < set(full) and len(full) == 40 and len(quick) == 20


def test_verb_writes_json_markdown_and_exit_status(tmp_path, capsys, monkeypatch):
    backend_or_skip("torch")
    monkeypatch.setattr(parity, "default_cases", lambda quick, dtypes: [
        LSTM64, Case("gru", "reset_before", 1, False, "float64")])
    assert parity_runner.main(True, ["torch"], ["float64"], "cpu", tmp_path) == 0
    doc = json.loads((tmp_path / "parity.json").read_text())
    assert doc["environment"]["versions"]["torch"]["torch"]
    assert {r["status"] for r in doc["records"]} == {"PASS", "NOT SUPPORTED", "DIFFERENT FUNCTION"}
    md = (tmp_path / "parity.md").read_text()
    assert "| torch/scratch |" in md and "reset_after candidate" in md
    out = capsys.readouterr().out
    assert "lstm float64" in out and "Totals: PASS 1" in out
    with pytest.raises(FileExistsError):      # a second run never overwrites the first
        parity_runner.main(True, ["torch"], ["float64"], "cpu", tmp_path)


def test_worst_table_takes_the_largest_passing_error():
    recs = [dict(cell="lstm", variant="reset_after", dtype="float64", status="PASS", max_abs=e)
            for e in (1e-15, 3e-15)]
    recs.append(dict(cell="lstm", variant="reset_after", dtype="float64", status="FAIL", max_abs=1.0))
    table = parity_tables.worst_table(recs)
    assert "| lstm | 3.0e-15 | PASS 2, FAIL 1 |" in table
