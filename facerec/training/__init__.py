"""Training a backbone with a margin head: the loop, batches, processes, model selection, tuning."""
