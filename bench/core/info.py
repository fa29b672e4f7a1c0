"""`rnnbench info`: which frameworks are installed, their versions, devices and threads."""
from __future__ import annotations

import json
import os
import platform

from bench.core.probe import probe_all

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS",
               "MXNET_CPU_WORKER_NTHREADS")


def host_record() -> dict:
    """What the machine is, and thread-related environment settings."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "env": {k: os.environ[k] for k in THREAD_VARS if k in os.environ}}


def format_record(rec: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in rec["versions"].items() if v)
    if not rec["available"]:
        return f"{rec['backend']:6s} not available: {rec['error']}"
    info = rec["info"]
    devices = ", ".join(map(str, info.get("devices", []))) or "?"
    threads = info.get("threads", {})
    threads = ", ".join(f"{k}={v}" for k, v in threads.items()) if isinstance(threads, dict) \
        else str(threads)
    return f"{rec['backend']:6s} {versions}\n       devices: {devices}\n       threads: {threads}"


def main(as_json: bool = False) -> int:
    host = host_record()
    records = probe_all()
    if as_json:
        print(json.dumps({"host": host, "backends": records}, indent=1, default=str))
        return 0
    print(f"python {host['python']} on {host['platform']} ({host['cpu_count']} CPUs)")
    if host["env"]:
        print("env: " + ", ".join(f"{k}={v}" for k, v in host["env"].items()))
    for rec in records:
        print(format_record(rec))
    return 0
