"""Datasets: photo folders, image decoding, the LFW protocol."""
