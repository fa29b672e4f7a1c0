"""Translation: seq2seq training, BLEU and greedy translations on fra-eng."""
