"""rnnbench harnesses: parity, speed, reports, and the `rnnbench` command line.

Importing this package imports no deep-learning framework.
"""
