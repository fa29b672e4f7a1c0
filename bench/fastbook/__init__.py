"""fastbook's model ladder (chapter 12's models on human_numbers), trained in every framework."""
