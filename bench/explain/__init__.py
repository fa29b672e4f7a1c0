"""Explain: the rungs from scratch to built-in layer, timed, and the page that says why Gluon is
faster."""
