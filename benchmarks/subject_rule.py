"""Which face of a multi-face photo is its subject? Measure each `detect.subject_rule`.

For every photo with several faces, each face is aligned and embedded with a trained
model and compared with its identity's centroid (the mean embedding of that identity's
single-face photos). The face most similar to the centroid is taken as the true subject
when it beats the runner-up by ``--margin`` cosine; each rule's pick is scored against it.

    python benchmarks/subject_rule.py --images ../shared/data/celeba_subset \
        --detections data/detections/train --aligned data/aligned/train \
        --checkpoint models/facerec_mobilefacenet/model.pt --out metrics/subject_rule.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from facerec.data.aligned import load_crops
from facerec.data.images import load_rgb
from facerec.data.sources import photo_location
from facerec.evaluation.embedding import embed_crops
from facerec.faces.alignment import align_face
from facerec.faces.detection import choose_subject
from facerec.faces.detectors import Face
from facerec.faces.manifest import landmarks_of
from facerec.models.checkpoints import load_pretrained

RULES = ("largest", "central", "score")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("--images", "--detections", "--aligned", "--checkpoint", "--out"):
        parser.add_argument(name, type=Path, required=True)
    parser.add_argument("--margin", type=float, default=0.05)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_pretrained(None, args.checkpoint)  # our checkpoint records its architecture

    manifest = pd.read_parquet(args.detections / "manifest.parquet")
    aligned = pd.read_parquet(args.aligned / "manifest.parquet")
    multi_face = set(manifest.loc[manifest["faces"] > 1, "path"])
    reference = aligned[~aligned["source"].isin(multi_face)]
    embeddings = embed_crops(model, load_crops(args.aligned, reference["path"].tolist()), 64, True, "fp32")
    centroids = {}
    for identity, rows in reference.groupby("identity").indices.items():
        mean = embeddings[rows].mean(axis=0)
        centroids[identity] = mean / np.linalg.norm(mean)

    multi = manifest[manifest["faces"] > 1]
    scores = dict.fromkeys(RULES, 0)
    decided = undecided = 0
    for path, faces in multi.groupby("path"):
        identity = faces["identity"].iloc[0]
        if identity not in centroids:
            continue
        image = load_rgb(photo_location(args.images, path), 10**9, 1)
        crops = np.stack([align_face(image, landmarks)[0] for landmarks in landmarks_of(faces)])
        vectors = embed_crops(model, torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous(), 64, True, "fp32")
        similarity = vectors @ centroids[identity]
        ranked = np.sort(similarity)[::-1]
        if ranked[0] - ranked[1] < args.margin:
            undecided += 1
            continue
        decided += 1
        truth = int(np.argmax(similarity))
        candidates = [Face(tuple(row[["x1", "y1", "x2", "y2"]]), lm, row["score"])
                      for (_, row), lm in zip(faces.iterrows(), landmarks_of(faces))]
        width, height = faces["width"].iloc[0], faces["height"].iloc[0]
        for rule in RULES:
            scores[rule] += choose_subject(candidates, width, height, rule) == truth
    result = {"multi_face_photos": int(multi["path"].nunique()), "decided": decided, "undecided": undecided,
              "margin": args.margin, "agreement": {rule: round(hits / decided, 4) if decided else None
                                                   for rule, hits in scores.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
