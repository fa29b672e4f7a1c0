"""Typed speed records and their JSON Lines file: append one record per line, read, resume.

Each line of `speed.jsonl` is one record, written by a single `os.write` on a file opened for
appending and then fsync'ed, so a killed sweep loses at most the record in flight: a torn last
line is skipped (and named) when reading, and the next append starts on a fresh line. A rerun
with the same directory skips every case whose key already has a record (OK, NOT SUPPORTED or
NO DEVICE); ERROR and NOT INSTALLED are retried, and the newest record of a key wins.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple, Union

from bench.core import status as S
from common.errors import DataError
from common.speedcase import SpeedCase

FILENAME = "speed.jsonl"
OK, NOT_SUPPORTED, NO_DEVICE, ERROR = S.OK, S.NOT_SUPPORTED, S.NO_DEVICE, S.ERROR
NOT_INSTALLED = S.NOT_INSTALLED
FINAL = (OK, NOT_SUPPORTED, NO_DEVICE)  # statuses a rerun does not repeat


def now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


@dataclass
class StepRecord:
    """One timed LM step (`kind == "step"`): what ran, how fast, and against which limit.

    `timing` is `bench.core.timing.Timing.summary()` (median_s, min_s, max_s, iqr_over_median,
    repeats, first_call_s, compile_s). `gemm_gflops` is the framework's own large square fp32
    GEMM rate on the device (measured in the same process); `gemm_bound_s` the time the step's
    matrix products would take at the rates measured for their shapes.
    """

    case: SpeedCase
    status: str
    note: str = ""
    code_path: str = ""
    device_name: str = ""
    versions: Dict[str, Optional[str]] = field(default_factory=dict)
    threads_used: Dict[str, object] = field(default_factory=dict)
    timing: Dict[str, float] = field(default_factory=dict)
    tokens_per_s: Optional[float] = None
    flops: Optional[int] = None
    gflops_per_s: Optional[float] = None
    gemm_gflops: Optional[float] = None
    fraction_of_gemm: Optional[float] = None
    gemm_bound_s: Optional[float] = None
    fraction_of_shape_limit: Optional[float] = None
    seed: int = 0
    timestamp: str = field(default_factory=now)
    kind: str = "step"

    @property
    def key(self) -> str:
        return self.case.key


@dataclass
class GemmRecord:
    """One fp32 GEMM `(M, K) x (K, N)` timed with a framework's own product `op`."""

    backend: str
    op: str
    M: int
    K: int
    N: int
    device: str
    threads: int
    status: str = OK
    note: str = ""
    device_name: str = ""
    dtype: str = "float32"
    timing: Dict[str, float] = field(default_factory=dict)
    gflops_per_s: Optional[float] = None
    timestamp: str = field(default_factory=now)
    kind: str = "gemm"

    @property
    def key(self) -> str:
        return (f"gemm/{self.backend}/{self.op}/{self.M}x{self.K}x{self.N}/{self.dtype}/"
                f"{self.device}/t{self.threads}")


@dataclass
class BareLoopRecord:
    """What the harness adds, over `rounds` alternating rounds of `steps` steps (each figure the
    best round's mean step time): `harness_mean_s` (the harness's `measure`, a sync after every
    call), `loop_s` (the same step timed by hand: `time.perf_counter` around the steps, one sync
    at the end) and `bare_s` (a hand-written plain loop of the framework, timed the same way).
    `overhead = harness_mean_s / loop_s - 1` is the harness's own cost; `step_vs_bare =
    loop_s / bare_s - 1` what the suite's step (bias masks, d2l's clipping) costs over the plain
    loop. `harness_median_s` is the harness's usual figure (median over rounds of medians)."""

    case: SpeedCase
    status: str
    note: str = ""
    steps: int = 0
    rounds: int = 0
    harness_median_s: Optional[float] = None
    harness_mean_s: Optional[float] = None
    loop_s: Optional[float] = None
    bare_s: Optional[float] = None
    overhead: Optional[float] = None
    step_vs_bare: Optional[float] = None
    timestamp: str = field(default_factory=now)
    kind: str = "bare-loop"

    @property
    def key(self) -> str:
        return "bare-loop/" + self.case.key


@dataclass
class FloorRecord:
    """The floor under a `fast` training step (`case`): the step's matrix products alone
    (`common.rungs.PRODUCTS`, the cell's gate width), run the framework's fastest way
    (`kernels`) and timed as the step is. A scratch step cannot run faster than this."""

    case: SpeedCase
    status: str
    note: str = ""
    kernels: str = ""
    timing: Dict[str, float] = field(default_factory=dict)
    timestamp: str = field(default_factory=now)
    kind: str = "floor"

    @property
    def key(self) -> str:
        return "floor/" + self.case.key


@dataclass
class EnvRecord:
    """What one framework's worker process saw: versions, GPUs, threads, CPU affinity, env."""

    backend: str
    versions: Dict[str, Optional[str]]
    gpu_names: List[str]
    threads: int
    threads_used: Dict[str, object]
    cpu_affinity: List[int]
    cpu_name: str
    env: Dict[str, str]
    load_average: List[float] = field(default_factory=list)  # 1, 5, 15 min, at the start
    cpu_count: int = 0  # the machine's CPUs (the affinity may use fewer)
    timestamp: str = field(default_factory=now)
    kind: str = "env"

    @property
    def key(self) -> str:
        return f"env/{self.backend}/t{self.threads}"


Record = Union[StepRecord, GemmRecord, BareLoopRecord, FloorRecord, EnvRecord]
KINDS = {"step": StepRecord, "gemm": GemmRecord, "bare-loop": BareLoopRecord,
         "floor": FloorRecord, "env": EnvRecord}


def to_json(record: Record) -> str:
    """One line of JSON (no newline inside)."""
    return json.dumps(dataclasses.asdict(record), sort_keys=True, allow_nan=True)


def from_dict(data: dict) -> Record:
    """The typed record a `to_json` line came from."""
    cls = KINDS[data["kind"]]
    data = dict(data)
    if "case" in data:
        data["case"] = SpeedCase(**data["case"])
    return cls(**data)


def append(path: Path, record: Record) -> None:
    """Append `record` as one line: one `os.write` (O_APPEND), then fsync. When the file's last
    line was torn (no newline: a killed writer), the record starts on a line of its own."""
    line = (to_json(record) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checked(path: Path) -> Tuple[List[Record], List[str]]:
    """(every complete record in order, a note per line skipped): a torn, undecodable or
    foreign line is skipped and named `FILE line N: why`, never trusted, never fatal."""
    path = Path(path)
    if not path.exists():
        return [], []
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a {FILENAME} records file")
    out, skipped = [], []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                out.append(from_dict(json.loads(raw.decode("utf-8"))))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                torn = "" if raw.endswith(b"\n") else " (torn: the writer was killed)"
                skipped.append(f"{path} line {number}: not a record{torn}: "
                               f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}")
    return out, skipped


def read(path: Path) -> List[Record]:
    """Every complete record of a JSON Lines file in order (bad lines skipped: `read_checked`)."""
    return read_checked(path)[0]


def latest(records: Iterable[Record]) -> Dict[str, Record]:
    """The newest record of each key."""
    out = {}
    for r in records:
        out[r.key] = r
    return out


def done_keys(records: Iterable[Record]) -> set:
    """Keys whose newest record is final (not an ERROR): a rerun skips these."""
    return {k for k, r in latest(records).items()
            if getattr(r, "status", OK) in FINAL and r.kind != "env"}
