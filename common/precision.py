"""TF32: the one switch every backend reads, so a whole process runs with TF32 on or off.

TF32 (NVIDIA Ampere and later) multiplies float32 matrices with 10 mantissa bits: fast, and
about 1e-3 relative error per product, far outside the float32 parity tolerance. Every backend
turns it off on a GPU unless `RNNBENCH_TF32=1` is set in the environment before the framework is
imported (`rnnbench parity --tf32` sets it); MXNet's libraries read their own switch only at
start, so the variable must be set before the process starts work.
"""
from __future__ import annotations

import os

TF32_ENV = "RNNBENCH_TF32"


def tf32_allowed() -> bool:
    """Whether this process was asked to run float32 GPU products in TF32."""
    return os.environ.get(TF32_ENV, "") == "1"


def allow_tf32() -> None:
    """Ask every backend loaded from now on in this process for TF32."""
    os.environ[TF32_ENV] = "1"
