"""Both stacks and every device: a missing framework or device is a row, never a crash; TF32 is
measured apart; runs of several machines compare; the GPU job packs what it made."""
import json
import sys
import tarfile
from dataclasses import asdict

import numpy as np
import pytest

from bench.core.progress import tqdm
from bench.jobs import gpu_job as gpujob
from bench.parity import harness as parity, tables as parity_tables
from bench.parity.harness import Case, ImplResult
from bench.report import compare
from common.errors import DeviceUnavailable
from common.precision import TF32_ENV, tf32_allowed
from common.speedcase import SpeedCase
from conftest import ROOT, backend_or_skip

CASE = Case("gru", "reset_before", 1, False, "float64")


def _ok(label, value):
    return ImplResult(label, "ok", arrays={"outputs.zero": np.full((2, 2), value)})


def _records_with_a_missing_framework():
    """What a machine without MXNet writes for a reset_before case (its distance record too)."""
    torch_s, jax_s = _ok("torch/scratch", 0.5), _ok("jax/scratch", 0.5)
    missing = ImplResult("mxnet/scratch", "not installed", "pip install 'rnnbench[mxnet]'")
    recs = [parity.compare(CASE, a, b, "cpu") for a, b in
            ((torch_s, jax_s), (torch_s, missing), (jax_s, missing))]
    builtin = ImplResult("mxnet/builtin[reset_after]", "not installed", "pip install it")
    recs.append(parity.compare(CASE, missing, builtin, "cpu", different_function=True))
    return [asdict(r) for r in recs]


def test_missing_framework_is_a_row_in_every_rendering():
    records = _records_with_a_missing_framework()
    text = parity_tables.text_report(records)
    assert "n/i" in text and "ok 0.0e+00" in text and "rnnbench[mxnet]" in text
    doc = {"records": records, "environment": {"device": "cpu", "sizes": parity.SIZES}}
    assert "| torch/scratch | — | ok 0.0e+00 | n/i |" in parity_tables.markdown_section(doc)
    labels = parity_tables.matrices(records)[("gru[reset_before]", "float64")]["labels"]
    assert labels == ["torch/scratch", "jax/scratch", "mxnet/scratch"]   # no distance label


def test_records_written_before_the_comparison_field_still_render():
    records = _records_with_a_missing_framework()
    for r in records:
        r.pop("comparison")
    assert "[reset_after]" not in parity_tables.text_report(records).split("Not run")[0]


def test_a_missing_device_is_no_device_not_a_failure(monkeypatch):
    def no_gpu(*_):
        raise DeviceUnavailable("torch 2.x is a CPU-only build: install a CUDA build")
    be = backend_or_skip("torch")
    monkeypatch.setattr(type(be), "build_layer", lambda self, *a, **k: no_gpu())
    result = parity.run_impl("torch", "scratch", CASE, parity.case_inputs(CASE), "gpu")
    assert (result.status, result.message) == ("no device", "torch 2.x is a CPU-only build: "
                                                             "install a CUDA build")
    rec = parity.compare(CASE, _ok("jax/scratch", 0.5), result, "gpu")
    assert rec.status == "NO DEVICE" and "CUDA build" in rec.note
    run = parity.ParityRun([rec], {}, {})
    assert run.failed == []


@pytest.mark.parametrize("backend", ["torch", "mxnet", "jax"])
def test_asking_for_a_gpu_that_is_not_there_says_so(backend):
    backend_or_skip(backend)
    from common.registry import get_module
    devices = get_module(backend, "devices")
    if backend != "mxnet" and len(_gpus(backend)):
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceUnavailable, match="(?i)gpu|cuda"):
        devices.resolve_device("gpu")


def _gpus(backend):
    if backend == "torch":
        import torch
        return range(torch.cuda.device_count())
    import jax
    return [d for d in jax.devices() if d.platform == "gpu"]


def test_mxnet_cpu_build_names_itself_when_a_gpu_is_asked_for():
    backend_or_skip("mxnet")
    from mxnet_impl.devices import resolve_device
    with pytest.raises(DeviceUnavailable, match="CPU-only build: no GPU build is installed"):
        resolve_device("gpu")


def test_tf32_pairs_are_measured_not_judged(monkeypatch):
    far = parity.compare(Case("rnn", "reset_after", 1, False, "float32"), _ok("a", 0.5),
                         _ok("b", 0.51), "gpu", judged=False)
    assert far.status == "MEASURED" and far.max_abs == pytest.approx(0.01)
    monkeypatch.setenv(TF32_ENV, "1")
    assert tf32_allowed()
    backend_or_skip("torch")
    run = parity.run([Case("rnn", "reset_after", 1, False, "float32")], ["torch"])
    assert {r.status for r in run.records} == {"MEASURED"} and run.environment["tf32"] is True
    assert run.failed == []


def test_tf32_is_off_unless_asked(monkeypatch):
    monkeypatch.delenv(TF32_ENV, raising=False)
    assert not tf32_allowed()
    backend_or_skip("torch")
    import torch

    from torch_impl.devices import set_tf32
    set_tf32(True)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    set_tf32(tf32_allowed())
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


def test_jax_x64_bridge_switches_float64_on_for_the_scope_only():
    backend_or_skip("jax")
    import jax.numpy as jnp

    from jax_impl.devices import enable_x64
    with enable_x64(True):
        assert jnp.zeros(1, dtype="float64").dtype == jnp.float64
    assert jnp.zeros(1).dtype == jnp.float32


def _write_run(directory, device, device_name, rates):
    """A results directory with one env record and one step record per (impl, tokens/s)."""
    from bench.speed import records as rec
    directory.mkdir()
    env = rec.EnvRecord("torch", {"torch": "9.9"}, [], 2, {}, [0, 1], device_name, {})
    lines = [rec.to_json(env)]
    for impl, tps in rates.items():
        case = SpeedCase("torch", impl, "lstm", "train", 256, 32, 35, 28, device=device, threads=2)
        lines.append(rec.to_json(rec.StepRecord(case, rec.OK, device_name=device_name,
                                                tokens_per_s=tps, timing={"median_s": 1.0})))
    (directory / rec.FILENAME).write_text("\n".join(lines) + "\n")
    return directory


def test_report_of_several_runs_puts_machines_side_by_side(tmp_path):
    a = _write_run(tmp_path / "laptop", "cpu", "Some CPU", {"scratch": 1000.0, "builtin": 2000.0})
    b = _write_run(tmp_path / "gpubox", "gpu", "Some GPU", {"scratch": 5000.0, "builtin": 3000.0})
    text = compare.build([a, b], tmp_path)
    assert "| torch/scratch | lstm | 1.0k | 5.0k (5x) |" in text
    assert "| torch/builtin | lstm | 2.0k | 3.0k (1.5x) |" in text
    assert "| laptop: cpu | Some CPU | torch 9.9 | 2 |" in text
    assert "| gpubox: gpu | Some GPU | torch 9.9 | 2 |" in text


def test_report_of_a_directory_without_records_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no speed.jsonl"):
        compare.load_runs([tmp_path / "empty"])


def test_gpu_job_plan_is_the_gpu_grid():
    plan = gpujob.speed_plan("gpu", quick=False)
    sizes = plan.grid.sizes
    assert sizes[:2] == ((256, 32, 35, 28), (1024, 32, 35, 28))
    assert max(b for _, b, _, _ in sizes) == 1024 and max(h for h, _, _, _ in sizes) == 4096
    assert plan.grid.devices == ("gpu",) and plan.gemm_square == 8192
    assert gpujob.speed_plan("cpu", quick=True).grid.sizes == gpujob.QUICK_SIZES


def test_gpu_job_packs_the_run_into_a_tarball_beside_its_report(tmp_path):
    run = tmp_path / "results" / "gpu-run-x"
    (run / "parity").mkdir(parents=True)
    (run / "report.md").write_text("# report\n")
    (run / "parity" / "parity.json").write_text("{}")
    tarball = gpujob.pack(run, tmp_path / "pack")
    assert sorted(p.name for p in (tmp_path / "pack").iterdir()) == ["gpu-run-x.tar.gz",
                                                                     "report.md"]
    with tarfile.open(tarball) as tar:
        assert set(tar.getnames()) == {"gpu-run-x", "gpu-run-x/report.md", "gpu-run-x/parity",
                                       "gpu-run-x/parity/parity.json"}


def test_progress_is_silent_off_a_terminal_and_without_tqdm(monkeypatch, capsys):
    bar = tqdm(range(3), desc="x")
    assert list(bar) == [0, 1, 2]
    bar.update(1), bar.set_postfix_str("y"), bar.close()
    monkeypatch.setitem(sys.modules, "tqdm", None)   # tqdm not installed
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert list(tqdm([4, 5])) == [4, 5]
    assert capsys.readouterr().err == ""


def test_install_metadata_allows_both_stacks():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python 3.11 and newer")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "<" not in meta["requires-python"]
    assert all("<2" not in dep for dep in meta["dependencies"] if dep.startswith("numpy"))
    extras = meta["optional-dependencies"]
    assert "numpy<2" in extras["mxnet"]
    for dep in extras["torch"] + extras["jax"]:
        assert ">=" in dep and "<" in dep.replace(">=", ""), dep   # a range, not a pin
    assert "torch==2.13.0" in extras["all"] and "jax==0.7.1" in extras["all"]


def test_environment_file_has_one_record_per_backend(tmp_path, capsys):
    gpujob.environment(tmp_path)
    doc = json.loads((tmp_path / "environment.json").read_text())
    assert [b["backend"] for b in doc["backends"]] == ["torch", "mxnet", "jax"]
    assert doc["host"]["cpu_count"] >= 1


def test_charts_are_skipped_where_matplotlib_is_missing(monkeypatch, tmp_path, capsys):
    from bench.core import plots
    from bench.parity import chart
    monkeypatch.setattr(plots, "available", lambda: False)
    monkeypatch.setattr(plots, "_said", [])
    assert chart.parity_chart({}, tmp_path / "x.png") is None
    assert chart.parity_chart({}, tmp_path / "y.png") is None
    assert capsys.readouterr().out == "charts skipped: matplotlib is not installed " \
                                      "(pip install matplotlib)\n"
    assert list(tmp_path.iterdir()) == []


def test_explain_page_says_which_framework_was_not_installed():
    from bench.explain.report import not_run
    recs = [{"framework": "torch"}, {"framework": "jax"}]
    lines = not_run({"frameworks": ["torch", "mxnet", "jax"]}, recs)
    assert lines == ["**MXNet Gluon: not installed here** (`pip install 'rnnbench[mxnet]'`), so "
                     "its ladder is missing below."]


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_bfloat16_speed_step_runs_and_claims_no_float32_gemm_share(backend):
    backend_or_skip(backend)
    from bench.speed import records as rec
    from bench.speed.worker import fill_rates
    from common.registry import get_module
    from common.speedcase import speed_data
    case = SpeedCase(backend, "fast", "lstm", "train", 8, 2, 3, 28, dtype="bfloat16")
    step = get_module(backend, "speed").build_step(case, *speed_data(case))
    out = step.fn()
    step.sync(out)
    first = out[0] if isinstance(out, (tuple, list)) else out
    loss = float(first.float().mean()) if backend == "torch" else float(
        np.asarray(first, dtype=np.float32).mean())
    assert np.isfinite(loss) and "bfloat16" in str(first.dtype)
    record = rec.StepRecord(case, rec.OK)
    fill_rates(record, 0.5, table=None)
    assert record.tokens_per_s == 2 * 3 / 0.5 and record.fraction_of_gemm is None


def test_mxnet_has_no_bfloat16_and_says_so():
    be = backend_or_skip("mxnet")
    from common.config import LMConfig
    from common.errors import NotSupported
    from common.params import init_lm_params
    cfg = LMConfig("lstm", "scratch", 28, 8)
    with pytest.raises(NotSupported, match="no bfloat16"):
        be.build_lm(cfg, init_lm_params(cfg), "bfloat16")


def test_gpu_job_times_bfloat16_beside_float32_without_its_own_gemm():
    assert gpujob.SPEED_DTYPES == ("float32", "bfloat16")
    plan = gpujob.speed_plan("gpu", quick=False, dtype="bfloat16")
    assert plan.grid.dtype == "bfloat16" and plan.gemm is False
    assert gpujob.speed_plan("gpu", quick=False).gemm is True
