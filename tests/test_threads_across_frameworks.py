"""Importing MXNet 1.9.1 lowers OpenMP to one thread for every framework in the process
(docs/performance.md); mxnet_impl/_mx.py and torch_impl/__init__.py undo that for PyTorch, loaded
before or after it."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT, backend_or_skip

SCRIPTS = {
    "torch first": "import torch; n = torch.get_num_threads(); import mxnet_impl._mx; "
                   "print(n, torch.get_num_threads())",
    "mxnet first": "import os; n = len(os.sched_getaffinity(0)); import mxnet_impl._mx; "
                   "import torch_impl.devices, torch; print(n, torch.get_num_threads())",
}


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs sched_getaffinity")
@pytest.mark.parametrize("order", list(SCRIPTS))
def test_importing_mxnet_leaves_torch_its_threads(order):
    backend_or_skip("torch")
    backend_or_skip("mxnet")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", SCRIPTS[order]], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    want, got = proc.stdout.split()[-2:]
    assert got == want, f"{order}: torch ran {got} threads, expected {want}"
