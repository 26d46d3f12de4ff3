"""LFW evaluation helpers: every pair scored once, a gallery/probe split independent of order."""

from __future__ import annotations

import numpy as np
import pandas as pd

from facerec.evaluation import all_pairs_scores, gallery_probe_split, protocol_scores


def test_all_pairs_are_scored_once_with_the_right_labels():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(700, 8)).astype(np.float32)
    identities = rng.integers(0, 40, 700)
    scores, labels = all_pairs_scores(embeddings, identities, block=64)
    rows, columns = np.triu_indices(700, k=1)
    np.testing.assert_allclose(scores, np.einsum("ij,ij->i", embeddings[rows], embeddings[columns]), atol=1e-4)
    np.testing.assert_array_equal(labels, identities[rows] == identities[columns])


def test_gallery_is_each_persons_first_image_whatever_the_listing_order():
    frame = pd.DataFrame({"source": ["b/b_2.jpg", "a/a_1.jpg", "b/b_1.jpg", "a/a_3.jpg", "c/c_1.jpg"],
                          "identity": ["b", "a", "b", "a", "c"]})
    gallery = gallery_probe_split(frame["source"], frame["identity"])
    assert set(frame["source"][gallery]) == {"a/a_1.jpg", "b/b_1.jpg", "c/c_1.jpg"}
    shuffled = frame.sample(frac=1, random_state=3).reset_index(drop=True)
    again = gallery_probe_split(shuffled["source"], shuffled["identity"])
    assert set(shuffled["source"][again]) == set(frame["source"][gallery])


def test_protocol_pairs_with_an_undetected_face_are_left_out():
    pairs = pd.DataFrame({"fold": [0, 0], "path1": ["a/1", "a/1"], "path2": ["a/2", "b/1"],
                          "genuine": [True, False]})
    embeddings = {"a/1": np.array([1.0, 0.0]), "a/2": np.array([0.6, 0.8])}
    scored = protocol_scores(pairs, embeddings)
    assert scored["path2"].tolist() == ["a/2"] and scored["score"].tolist() == [0.6]
