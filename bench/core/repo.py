"""Where this checkout is, and the environment of a child process that must import the same
`bench` (a worker started with `python -m bench...` from any working directory)."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def child_env(env=None) -> dict:
    """`env` (default: this process's) with the checkout first on PYTHONPATH."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env
