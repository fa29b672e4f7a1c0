"""Language models: corpora as batches, training and resuming, generation, quality against the
books' anchors, loss trajectories."""
