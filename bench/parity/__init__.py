"""Parity: do all implementations compute the same function? Cases, tolerances, the seq2seq cases,
tables and the heat map."""
