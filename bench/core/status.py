"""The status vocabulary of parity, speed and explain rows, defined once.

Two layers, each printed exactly as written here:

- what one attempt came to, lower case: an implementation's run in a parity case, a rung in
  explain, an exercise (`RAN`, `NOT_SUPPORTED_HERE`, ...);
- the verdict a record carries, upper case: a parity pair (`PASS`, `FAIL`, `MEASURED`, ...) or a
  speed record (`OK`, ...), with the blocking statuses the two share (`NOT_SUPPORTED`, ...).

`SHORT` gives each verdict's short form for table cells.
"""
from __future__ import annotations

# What one attempt came to (parity's ImplResult, explain's rung rows, an exercise's result).
RAN = "ok"
RUN_ERROR = "error"
NOT_SUPPORTED_HERE = "not supported"
NOT_INSTALLED_HERE = "not installed"
NO_DEVICE_HERE = "no device"
DEVICE_UNSEEN = "unavailable"   # explain: the framework does not see the device asked for

# A record's verdict. Parity pairs: PASS | FAIL | MEASURED (TF32 on: the error shown, not
# judged) | DIFFERENT FUNCTION, or a blocking status. Speed records: OK, or a blocking status.
PASS, FAIL, MEASURED, DIFFERENT_FUNCTION = "PASS", "FAIL", "MEASURED", "DIFFERENT FUNCTION"
OK = "OK"
NOT_SUPPORTED, NOT_INSTALLED, NO_DEVICE, ERROR = ("NOT SUPPORTED", "NOT INSTALLED", "NO DEVICE",
                                                  "ERROR")
FAILED = (FAIL, ERROR)          # verdicts that make a run's exit status 1

# An attempt that stops a comparison -> the record's verdict (the first that applies).
BLOCKING = ((RUN_ERROR, ERROR), (NOT_INSTALLED_HERE, NOT_INSTALLED), (NO_DEVICE_HERE, NO_DEVICE),
            (NOT_SUPPORTED_HERE, NOT_SUPPORTED))

SHORT = {PASS: "ok", FAIL: "FAIL", NOT_SUPPORTED: "n/s", NOT_INSTALLED: "n/i", NO_DEVICE: "n/d",
         ERROR: "ERR", DIFFERENT_FUNCTION: "diff", MEASURED: "m"}
# Best first: the status a matrix cell shows when several records fall into it.
RANK = [PASS, MEASURED, DIFFERENT_FUNCTION, NOT_INSTALLED, NO_DEVICE, NOT_SUPPORTED, FAIL, ERROR]
