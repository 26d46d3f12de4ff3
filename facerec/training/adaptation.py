"""Adapting a model's embeddings to the user's people with a linear map fitted on them.

Within-class covariance normalisation (WCCN; Hatch et al., 2006): centre the L2-normalised
embeddings on the training faces' mean, then whiten the pooled covariance of each face
around its person's mean, so that the directions in which one person's photos vary (pose,
light, age in this kind of photo) weigh less in the cosine than those that tell people
apart. The covariance is Ledoit–Wolf shrunk (scikit-learn), which sets the regularisation
from the data: nothing to tune.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.covariance import LedoitWolf


def fit_whitening(embeddings: np.ndarray, identities: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean D, projection D×D) of within-class whitening, fitted on N×D ``embeddings`` (any
    scale: each row is L2-normalised first) of people ``identities`` (N labels). People with one
    face add nothing to the within-class covariance and are left out of it."""
    normalised = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    frame = pd.DataFrame(normalised)
    by_person = frame.groupby(identities)
    shared = by_person[0].transform("size").to_numpy() > 1
    if shared.sum() <= normalised.shape[1]:
        raise ValueError(f"whitening a {normalised.shape[1]}-d embedding needs more than {normalised.shape[1]} faces "
                         f"of people with several photos; got {int(shared.sum())}")
    residuals = (frame - by_person.transform("mean")).to_numpy()[shared]
    covariance = LedoitWolf(assume_centered=True).fit(residuals).covariance_
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    projection = (eigenvectors / np.sqrt(eigenvalues)) @ eigenvectors.T
    return (torch.from_numpy(normalised.mean(axis=0).astype(np.float32)),
            torch.from_numpy(projection.astype(np.float32)))
