"""Evaluate an embedding model on LFW: View 2 10-fold accuracy, all-pairs ROC, Rank-k."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from facerec.data.people import chosen_people
from facerec.evaluation.metrics import (
    FAR_TARGETS,
    FPIR_TARGETS,
    ImpostorTally,
    best_threshold,
    identification_metrics,
    k_fold_accuracy,
    metrics_from_roc,
    open_set_metrics,
    verification_metrics,
)

# Share of an identity set's people searched for without being enrolled (open-set probes).
NONMATED_SHARE = 0.1

log = logging.getLogger(__name__)


def protocol_faces(aligned: pd.DataFrame, *pair_tables: pd.DataFrame) -> pd.DataFrame:
    """The aligned faces that appear in any of the protocol's pair tables, in path order."""
    return aligned[aligned["source"].isin(_faces_of(*pair_tables))].sort_values("source").reset_index(drop=True)


def _faces_of(*pair_tables: pd.DataFrame) -> set[str]:
    return {path for pairs in pair_tables for column in ("path1", "path2") for path in pairs[column]}


def protocol_scores(pairs: pd.DataFrame, embeddings: dict[str, np.ndarray]) -> pd.DataFrame:
    """Cosine scores of the protocol pairs whose two faces were both aligned.

    ``embeddings`` maps an image's source path (relative to the LFW images root) to its
    L2-normalised embedding. Pairs with a missing face are dropped here and counted by the caller.
    """
    present = pairs["path1"].isin(embeddings) & pairs["path2"].isin(embeddings)
    scored = pairs[present].copy()
    first = np.stack([embeddings[p] for p in scored["path1"]]) if len(scored) else np.zeros((0, 1))
    second = np.stack([embeddings[p] for p in scored["path2"]]) if len(scored) else np.zeros((0, 1))
    scored["score"] = np.einsum("ij,ij->i", first, second)
    return scored


def all_pairs_tally(embeddings: np.ndarray, identities: np.ndarray, block: int = 1024) -> ImpostorTally:
    """The exact ROC of every unordered pair of distinct faces (genuine = same identity).

    The faces are grouped by identity, so a face's genuine partners after it form one run
    of columns. Genuine scores come from each identity's own block; impostors from one
    block×N slab of float32 similarities at a time, in which every column before the end of
    the row's identity run (the lower triangle, the diagonal, the genuine pairs: all in the
    slab's first columns) is masked out. The next slab is multiplied (BLAS, without the
    GIL) while this one is counted. Memory stays at two slabs whatever the number of pairs:
    no N×N matrix, no list of scores.
    """
    order = np.argsort(identities, kind="stable")
    faces = np.ascontiguousarray(np.asarray(embeddings)[order], dtype=np.float32)
    _, starts, counts = np.unique(np.asarray(identities)[order], return_index=True, return_counts=True)
    upper = {count: np.triu_indices(count, k=1) for count in np.unique(counts)}
    genuine = [(faces[start:start + count] @ faces[start:start + count].T)[upper[count]]
               for start, count in zip(starts, counts) if count >= 2]
    if not genuine:
        raise ValueError(f"no identity has two faces among {len(faces)}: there are no genuine pairs")
    tally = ImpostorTally(np.concatenate(genuine))
    run_end = np.repeat(starts + counts, counts)  # per face: one past its identity's last face
    buffers = [np.empty(min(block, len(faces)) * len(faces), np.float32) for _ in range(2)]

    def similarities(start: int, buffer: np.ndarray) -> np.ndarray:
        rows, columns = faces[start:start + block], faces[start:]
        return np.matmul(rows, columns.T, out=buffer[:len(rows) * len(columns)].reshape(len(rows), len(columns)))

    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(similarities, 0, buffers[0])
        for index, start in enumerate(range(0, len(faces), block)):
            similarity = upcoming.result()
            if start + block < len(faces):
                upcoming = pool.submit(similarities, start + block, buffers[(index + 1) % 2])
            ends = run_end[start:start + len(similarity)] - start  # per row: its first impostor column
            band = similarity[:, :ends.max()]
            band[np.arange(band.shape[1]) < ends[:, None]] = np.inf
            tally.add_impostors(similarity, placeholders=int(ends.sum()))
    return tally


def gallery_probe_split(sources: pd.Series, identities: pd.Series) -> np.ndarray:
    """Boolean gallery mask: per identity with 2+ faces, its lexicographically first image is
    the gallery and the rest are probes; identities with one face take no part (mask False
    and excluded by the caller). Independent of directory listing order."""
    frame = pd.DataFrame({"source": sources.to_numpy(), "identity": identities.to_numpy()})
    first = frame.sort_values("source").groupby("identity")["source"].transform("first")
    return (frame["source"] == first.reindex(frame.index)).to_numpy()


def nonmated_identities(identities: pd.Series, share: float = NONMATED_SHARE) -> set[str]:
    """The people kept out of the open-set gallery: the ``share`` of them (at least one when
    there are two or more), chosen by name (:func:`facerec.data.people.chosen_people`)."""
    count = len(set(identities))
    return chosen_people(identities, max(1, round(share * count)) if count >= 2 else 0, "nonmated")


def open_set_identification(faces: pd.DataFrame, embeddings: np.ndarray, share: float = NONMATED_SHARE) -> dict:
    """FNIR at FPIR 1 % and 10 % of an identity set: the non-mated people's every face
    searched against a gallery of everyone else (each person's first image by
    :func:`gallery_probe_split`), the enrolled people's other faces as mated searches."""
    outsiders = faces["identity"].isin(nonmated_identities(faces["identity"], share)).to_numpy()
    enrolled = faces[~outsiders]
    gallery_of_enrolled = gallery_probe_split(enrolled["source"], enrolled["identity"])
    gallery = np.flatnonzero(~outsiders)[gallery_of_enrolled]
    mated = np.flatnonzero(~outsiders)[~gallery_of_enrolled]
    identities = faces["identity"].to_numpy()
    figures = open_set_metrics(embeddings[gallery], identities[gallery], embeddings[mated], identities[mated],
                               embeddings[outsiders])
    return {**figures, "open_set_gallery_faces": int(len(gallery)), "mated_probe_faces": int(len(mated)),
            "nonmated_probe_faces": int(outsiders.sum())}


def view1_accuracy(dev_train: pd.DataFrame, dev_test: pd.DataFrame, by_source: dict[str, np.ndarray]) -> dict:
    """LFW View 1 for a model trained elsewhere: the threshold of best accuracy on
    pairsDevTrain, applied to pairsDevTest."""
    train, test = protocol_scores(dev_train, by_source), protocol_scores(dev_test, by_source)
    threshold = best_threshold(train["score"].to_numpy(), train["genuine"].to_numpy())
    correct = (test["score"].to_numpy() >= threshold) == test["genuine"].to_numpy()
    return {"lfw_view1_accuracy": float(correct.mean()), "lfw_view1_threshold": threshold,
            "lfw_view1_pairs_scored": int(len(test)), "lfw_view1_pairs_missing": int(len(dev_test) - len(test))}


def pairs_accuracy(pairs: pd.DataFrame, by_source: dict[str, np.ndarray]) -> dict:
    """An identity set's own pairs file, 10-fold like LFW's View 2: ``pairs_accuracy`` (mean,
    ``_std``) over the pairs whose two faces were aligned, and how many were not."""
    scored = protocol_scores(pairs, by_source)
    if not len(scored):
        raise ValueError("none of the pairs file's pairs has both faces aligned: do its paths match the photo set's?")
    accuracy, accuracy_std = k_fold_accuracy(scored["score"].to_numpy(), scored["genuine"].to_numpy(),
                                             scored["fold"].to_numpy())
    return {"pairs_accuracy": accuracy, "pairs_accuracy_std": accuracy_std, "pairs_scored": int(len(scored)),
            "pairs_missing": int(len(pairs) - len(scored))}


def evaluate_lfw(aligned: pd.DataFrame, embeddings: np.ndarray, pairs: pd.DataFrame,
                 view1: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> tuple[dict, pd.DataFrame]:
    """All LFW metrics for one model; returns (metrics, roc curve frame for plotting).

    ``aligned`` lists the evaluation faces (see :func:`protocol_faces`), row-aligned with
    ``embeddings``. The 10-fold accuracy, ROC-AUC, EER and best accuracy follow pairs.txt;
    TAR@FAR (and the plotted ROC) use every pair that can be formed among the faces of
    pairs.txt; Rank-1/5 use :func:`gallery_probe_split` on them. With ``view1`` (the
    pairsDevTrain and pairsDevTest tables), also View 1's accuracy.
    """
    by_source = dict(zip(aligned["source"], embeddings))
    in_view2 = aligned["source"].isin(_faces_of(pairs)).to_numpy()
    aligned, embeddings = aligned[in_view2].reset_index(drop=True), embeddings[in_view2]
    scored = protocol_scores(pairs, by_source)
    missing = len(pairs) - len(scored)
    if missing:
        log.warning("%d of %d LFW pairs have an undetected face and are not scored", missing, len(pairs))
    accuracy, accuracy_std = k_fold_accuracy(scored["score"].to_numpy(), scored["genuine"].to_numpy(),
                                             scored["fold"].to_numpy())
    metrics: dict[str, float | None] = {"lfw_accuracy": accuracy, "lfw_accuracy_std": accuracy_std}
    # ROC-AUC, EER and best accuracy on the protocol's balanced pairs; on all pairs the
    # impostors outnumber genuine pairs ~1000:1 and "accuracy" would only count impostors.
    metrics.update(verification_metrics(scored["score"].to_numpy(), scored["genuine"].to_numpy()))
    # TAR at low FAR needs many impostors: read it on every pair the faces can form.
    every_pair, roc = identity_set_metrics(aligned, embeddings)
    metrics.update({key: every_pair[key] for key in FAR_TARGETS})
    metrics.update({"all_pairs_roc_auc": every_pair["roc_auc"], "all_pairs_eer": every_pair["eer"],
                    **{key: every_pair[key] for key in ("genuine_pairs", "impostor_pairs", "rank1", "rank5",
                                                        "faces", "gallery_faces", "probe_faces", *FPIR_TARGETS,
                                                        "open_set_gallery_faces", "mated_probe_faces",
                                                        "nonmated_probe_faces")}})
    metrics.update({"lfw_pairs_scored": int(len(scored)), "lfw_pairs_missing": int(missing)})
    if view1 is not None:
        metrics.update(view1_accuracy(*view1, by_source))
    return metrics, roc


def identity_set_metrics(faces: pd.DataFrame, embeddings: np.ndarray) -> tuple[dict, pd.DataFrame]:
    """The protocol for any set of faces labelled by identity (``source``, ``identity``),
    row-aligned with ``embeddings``: verification over every pair (all genuine and all
    impostor pairs, counted exactly by :func:`all_pairs_tally`, so TAR@FAR is measured down
    to 1/impostors), Rank-1/5 with :func:`gallery_probe_split`, and open-set FNIR at FPIR
    (:func:`open_set_identification`). Returns (metrics, ROC for plotting)."""
    identities = faces["identity"].to_numpy()
    tally = all_pairs_tally(embeddings, identities)
    fpr, tpr, _ = tally.roc()
    metrics = {**metrics_from_roc(fpr, tpr, tally.genuine, tally.impostors),
               "genuine_pairs": tally.genuine, "impostor_pairs": tally.impostors}
    repeated = faces.groupby("identity")["source"].transform("size").to_numpy() >= 2
    gallery = gallery_probe_split(faces["source"], faces["identity"]) & repeated
    probe = ~gallery & repeated
    metrics.update(identification_metrics(embeddings[gallery], identities[gallery],
                                          embeddings[probe], identities[probe]))
    metrics.update({"faces": int(len(faces)), "identities": int(faces["identity"].nunique()),
                    "gallery_faces": int(gallery.sum()), "probe_faces": int(probe.sum())})
    metrics.update(open_set_identification(faces, embeddings))
    return metrics, roc_for_plot(fpr, tpr)


def verification_set_metrics(name: str, embeddings: np.ndarray, issame: np.ndarray, folds: int = 10) -> dict:
    """insightface's protocol for a verification set whose faces 2i and 2i+1 form pair i:
    ``<name>_accuracy`` over ``folds`` contiguous folds of pairs (each fold's threshold
    chosen on the others, mean and std), and the ROC figures of all its pairs."""
    scores = np.einsum("ij,ij->i", embeddings[0::2], embeddings[1::2])
    fold_of_pair = np.arange(len(scores)) * folds // len(scores)
    accuracy, accuracy_std = k_fold_accuracy(scores, issame, fold_of_pair)
    figures = verification_metrics(scores, issame)
    del figures["accuracy"]  # the best-threshold accuracy: the folds' accuracy is the reported one
    return {f"{name}_accuracy": accuracy, f"{name}_accuracy_std": accuracy_std, f"{name}_pairs": int(len(scores)),
            **{f"{name}_{key}": value for key, value in figures.items()}}


def roc_for_plot(fpr: np.ndarray, tpr: np.ndarray, points: int = 500) -> pd.DataFrame:
    """The ROC resampled on a log-spaced FPR grid (1e-6..1), small enough for dvc plots."""
    grid = np.unique(np.r_[np.logspace(-6, 0, points), fpr[-1]])
    return pd.DataFrame({"fpr": grid, "tpr": np.interp(grid, fpr, tpr)})
