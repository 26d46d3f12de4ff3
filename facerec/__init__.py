"""facerec: a reproducible face-recognition pipeline (detect, align, train, evaluate, benchmark)."""

from facerec.runtime.offline import silence_network

silence_network()
