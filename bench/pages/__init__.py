"""The result pages under docs/ and the README's headline lines, rendered from the records
committed under docs/results/ (`rnnbench pages`)."""
