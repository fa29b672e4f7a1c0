"""Shared infrastructure: result records on disk, timing, charts, progress bars, signals, device
probes, the environment record and the status vocabulary."""
