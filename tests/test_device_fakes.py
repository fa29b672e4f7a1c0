"""GPU-only code paths, exercised without a GPU: the CUDA/GPU entry points are replaced by
recording fakes, so the tests see whether each framework's timed region ends with its barrier,
whether TF32 is switched off for parity, and whether the device the user named is the one used.
"""
import os
import types

import numpy as np
import pytest

from bench.speed import worker
from common.errors import RnnbenchError
from common.speedcase import Budget, SpeedCase, speed_data


def tiny(backend, mode="train", device="cpu"):
    return SpeedCase(backend, "builtin", "gru", mode, hidden=4, batch=2, steps=3, vocab=5,
                     threads=1, device=device)


class Events:
    """A shared log of clock reads and barriers."""

    def __init__(self):
        self.log, self.now = [], 0.0

    def clock(self):
        self.log.append("clock")
        self.now += 1.0
        return self.now


def _spy_sync(monkeypatch, module, events):
    """Wrap `module.make_sync` so every barrier the steps end with is logged with its device."""
    real, devices = module.make_sync, []

    def make_sync(device):
        devices.append(device)
        sync = real(device)

        def logged(result=None):
            events.log.append("sync")
            return sync(result)
        return logged
    monkeypatch.setattr(module, "make_sync", make_sync)
    return devices


def _assert_each_timed_region_ends_with_sync(log):
    """Whatever happens between two clock reads ends with the barrier."""
    segments = " ".join(log).split("clock")
    assert all(seg.split()[-1] == "sync" for seg in segments if seg.split()), log


def _speed_module(backend):
    pytest.importorskip({"torch": "torch", "mxnet": "mxnet_impl._mx", "jax": "jax"}[backend])
    from common.registry import get_module
    return get_module(backend, "speed")


# ---------------------------------------------------------------- the barriers

@pytest.mark.parametrize("backend", ["torch", "mxnet", "jax"])
def test_each_frameworks_timed_region_ends_with_its_barrier(backend, monkeypatch):
    module, events = _speed_module(backend), Events()
    devices = _spy_sync(monkeypatch, module, events)
    budget = Budget(warmup=1, min_repeats=3, seconds=0.0)
    for mode in ("train", "infer"):
        events.log.clear()
        record = worker.measure_case(module, tiny(backend, mode), budget, clock=events.clock)
        assert record.status == "OK", record.note
        _assert_each_timed_region_ends_with_sync(events.log)
        assert events.log.count("sync") == 1 + 1 + 3      # first call, warm-up, repeats
    step = module.gemm_step(module.GEMM_OPS[0], 2, 3, 4)
    assert step.sync is not None and len(devices) == 3    # train, infer and the GEMM probe


def test_torch_barrier_on_cuda_is_cuda_synchronize(monkeypatch):
    torch = pytest.importorskip("torch")
    from torch_impl import speed as torch_speed
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    cuda = torch.device("cuda", 1)
    torch_speed.make_sync(cuda)("result")
    assert calls == [cuda]
    torch_speed.make_sync(torch.device("cpu"))("result")
    assert calls == [cuda]                                 # nothing to wait for on the CPU


def test_torch_bare_loop_synchronises_before_and_after_its_clock(monkeypatch):
    pytest.importorskip("torch")
    from torch_impl import speed as torch_speed
    events = Events()
    _spy_sync(monkeypatch, torch_speed, events)
    monkeypatch.setattr(torch_speed, "time", types.SimpleNamespace(perf_counter=events.clock))
    case = tiny("torch")
    torch_speed.bare_loop(case, *speed_data(case), 2)
    assert events.log == ["sync", "clock", "sync", "clock"]


def test_torch_explain_rungs_use_the_same_barrier(monkeypatch):
    torch = pytest.importorskip("torch")
    from torch_impl import rungs
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    cuda = torch.device("cuda", 0)
    rungs.sync(types.SimpleNamespace(device=cuda))(None)
    assert calls == [cuda]


def test_mxnet_barrier_waits_for_the_engine(monkeypatch):
    pytest.importorskip("mxnet_impl._mx")
    from mxnet_impl import speed as mx_speed
    calls = []
    monkeypatch.setattr(mx_speed.nd, "waitall", lambda: calls.append("waitall"))
    mx_speed.make_sync(mx_speed.mx.gpu(1))(None)
    assert calls == ["waitall"]


def test_jax_barrier_blocks_on_what_the_step_returned(monkeypatch):
    jax = pytest.importorskip("jax")
    from jax_impl import speed as jax_speed
    calls = []
    monkeypatch.setattr(jax, "block_until_ready", lambda x: calls.append(x) or x)
    jax_speed.make_sync(object())("the result")
    assert calls == ["the result"]


# ---------------------------------------------------------------- TF32 and device choice

@pytest.fixture
def torch_with_two_gpus(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
    saved = [f.allow_tf32 for f in flags]
    for f in flags:
        f.allow_tf32 = True
    yield torch
    for f, value in zip(flags, saved):
        f.allow_tf32 = value


@pytest.mark.parametrize("name, index", [("gpu", None), ("cuda", None), ("gpu:1", 1),
                                         ("CUDA:0", 0)])
def test_torch_picks_the_gpu_asked_for_with_tf32_off(torch_with_two_gpus, name, index):
    from torch_impl import devices
    torch = torch_with_two_gpus
    assert devices.resolve_device(name) == torch.device("cuda", index)
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.backends.cudnn.allow_tf32 is False


def test_torch_gpu_index_past_the_count_names_the_count(torch_with_two_gpus):
    from torch_impl import devices
    with pytest.raises(RnnbenchError, match="torch sees 2"):
        devices.resolve_device("gpu:2")


def test_torch_cpu_leaves_tf32_alone(torch_with_two_gpus):
    from torch_impl import devices
    torch = torch_with_two_gpus
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert torch.backends.cuda.matmul.allow_tf32 is True


@pytest.fixture
def mxnet_with_two_gpus(monkeypatch):
    pytest.importorskip("mxnet_impl._mx")
    from mxnet_impl import devices
    monkeypatch.setattr(devices.mx.context, "num_gpus", lambda: 2)
    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    return devices


@pytest.mark.parametrize("name, index", [("gpu", 0), ("cuda:1", 1), ("GPU:1", 1)])
def test_mxnet_picks_the_gpu_asked_for_with_tf32_off(mxnet_with_two_gpus, name, index):
    ctx = mxnet_with_two_gpus.resolve_device(name)
    assert (ctx.device_type, ctx.device_id) == ("gpu", index)
    assert os.environ["NVIDIA_TF32_OVERRIDE"] == "0"


def test_mxnet_gpu_index_past_the_count_names_the_count(mxnet_with_two_gpus):
    with pytest.raises(RnnbenchError, match="sees 2 GPU"):
        mxnet_with_two_gpus.resolve_device("gpu:2")
    assert "NVIDIA_TF32_OVERRIDE" not in os.environ


def test_mxnet_cpu_leaves_the_tf32_switch_alone(mxnet_with_two_gpus):
    assert mxnet_with_two_gpus.resolve_device("cpu").device_type == "cpu"
    assert "NVIDIA_TF32_OVERRIDE" not in os.environ


@pytest.mark.parametrize("backend", ["torch", "mxnet", "jax"])
def test_adapters_resolve_the_device_the_user_named(backend, monkeypatch):
    """build_layer and build_lm hand the user's device name to the framework's resolver."""
    pytest.importorskip({"torch": "torch", "mxnet": "mxnet_impl._mx", "jax": "jax"}[backend])
    import importlib
    from common.config import LayerSpec, LMConfig
    from common.params import init_lm_params, init_params
    adapter = importlib.import_module(f"{backend}_impl.adapter")
    devices = importlib.import_module(f"{backend}_impl.devices")
    asked, real = [], devices.resolve_device
    spy = lambda name="cpu": asked.append(name) or real("cpu")
    for mod in (adapter, devices, importlib.import_module(f"{backend}_impl.lm")):
        if hasattr(mod, "resolve_device"):
            monkeypatch.setattr(mod, "resolve_device", spy)
    spec = LayerSpec("gru", 3, 4)
    adapter.BACKEND.build_layer(spec, "scratch", init_params(spec, 0), "float32", "gpu:1")
    cfg = LMConfig("gru", "scratch", 5, 4)
    adapter.BACKEND.build_lm(cfg, init_lm_params(cfg, 0), "float32", "cuda:1")
    assert asked[:1] == ["gpu:1"] and "cuda:1" in asked
    assert set(asked) <= {"gpu:1", "cuda:1"}
