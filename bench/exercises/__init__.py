"""d2l's RNN exercises, each answered by an experiment: the registry, the runner, the groups and
the page."""
