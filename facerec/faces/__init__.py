"""Faces in photos: detectors, the detection run and its manifest, its cache, alignment."""
