"""The `rnnbench` command line: `main` (the entry point), one module per verb group, and
`argtypes`, the one home of the argument types whose refusals say what would be accepted."""
from bench.cli.main import main

__all__ = ["main"]
