"""facerec: a reproducible face-recognition pipeline (detect, align, train, evaluate, benchmark)."""

from facerec.offline import silence_network

silence_network()
