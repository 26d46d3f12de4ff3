"""Scoring embeddings: batched extraction, verification and identification metrics, the protocols."""
