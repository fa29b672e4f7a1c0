"""rnnbench harnesses: parity, speed, reports, and the `rnnbench` command line.

One sub-package per verb or group of verbs: `cli` (the entry point, each verb's options,
`argtypes`), `parity`, `speed`, `explain`, `lm`, `fastbook`, `translate`, `exercises`, `report`,
`pages` and `jobs` (the main and GPU jobs); `core` is what they share (records on disk, timing,
charts, progress, signals, device probes, the status vocabulary).

Importing this package imports no deep-learning framework.
"""
