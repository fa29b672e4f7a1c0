"""Framework-neutral core of rnnbench: corpora, vocabularies, batching, metrics,
canonical parameters and the backend registry.

Importing this package imports no deep-learning framework.
"""
