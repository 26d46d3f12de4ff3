"""LFW evaluation helpers: every pair scored once, a gallery/probe split independent of order."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from facerec.evaluation.protocols import all_pairs_tally, gallery_probe_split, protocol_scores, view1_accuracy


def test_all_pairs_roc_counts_every_pair_once_and_matches_sklearn():
    """Blocks of 64 faces against all later faces, genuine pairs masked out: the same ROC as
    scikit-learn's on the explicit list of every pair."""
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 8))
    identities = rng.integers(0, 40, 700)
    embeddings = (centres[identities] + rng.normal(scale=1.5, size=(700, 8))).astype(np.float32)
    tally = all_pairs_tally(embeddings, identities, block=64)
    rows, columns = np.triu_indices(700, k=1)
    scores = np.einsum("ij,ij->i", embeddings[rows], embeddings[columns])
    labels = identities[rows] == identities[columns]
    assert (tally.genuine, tally.impostors) == (labels.sum(), (~labels).sum())
    fpr, tpr, _ = tally.roc()
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)
    sk_fpr, sk_tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(np.interp(sk_fpr, fpr, tpr), sk_tpr, atol=1e-3)


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


def test_view1_takes_its_threshold_from_dev_train_and_scores_dev_test():
    """Train pairs put the best threshold between 0.5 and 0.7; on the test pairs that
    threshold gets 3 of 4 right, though a threshold chosen on them would get all 4."""
    unit = {name: np.array([np.cos(angle), np.sin(angle)]) for name, angle in
            {"a": 0.0, "b": np.arccos(0.9), "c": np.arccos(0.7), "d": np.arccos(0.5), "e": np.arccos(0.3),
             "f": np.arccos(0.6), "g": np.arccos(0.4)}.items()}
    train = pd.DataFrame({"fold": 0, "path1": ["a", "a", "a", "a"], "path2": ["b", "c", "d", "e"],
                          "genuine": [True, True, False, False]})
    test = pd.DataFrame({"fold": 0, "path1": ["a", "a", "a", "a", "a"], "path2": ["b", "f", "g", "e", "zz"],
                         "genuine": [True, True, False, False, True]})
    result = view1_accuracy(train, test, unit)
    assert result["lfw_view1_threshold"] == pytest.approx(0.7)
    assert result["lfw_view1_accuracy"] == 0.75
    assert result["lfw_view1_pairs_scored"] == 4 and result["lfw_view1_pairs_missing"] == 1


@pytest.mark.slow  # embeds the small project's LFW folder again (~40 s); metrics tests cover the tally
def test_any_aligned_identity_folder_is_scored_on_every_pair_through_the_cli(small_project, tmp_path):
    """`facerec evaluate-folder` on the small project's aligned CelebA faces: every genuine
    and every impostor pair counted, figures from the real trained model."""
    import subprocess
    import sys

    import yaml

    from facerec.data.aligned import read_aligned_manifest

    model = yaml.safe_load((small_project / "params.yaml").read_text())["train"]["model_name"]
    aligned = small_project / "data" / "aligned" / "train"
    result = subprocess.run([sys.executable, "-m", "facerec", "evaluate-folder", "--checkpoint",
                             str(small_project / "models" / model / "model.pt"), "--aligned", str(aligned),
                             "--roc", str(tmp_path / "roc.csv")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout)
    sizes = read_aligned_manifest(aligned).groupby("identity").size()
    faces = int(sizes.sum())
    assert metrics["faces"] == faces and metrics["identities"] == len(sizes)
    assert metrics["genuine_pairs"] == int((sizes * (sizes - 1) // 2).sum())
    assert metrics["genuine_pairs"] + metrics["impostor_pairs"] == faces * (faces - 1) // 2
    # The same figures as scikit-learn on the explicit list of every pair of the same embeddings.
    from sklearn.metrics import roc_auc_score

    from facerec.data.aligned import load_crops
    from facerec.evaluation.embedding import embed_crops
    from facerec.models.checkpoints import load_pretrained

    faces_table = read_aligned_manifest(aligned).sort_values("source")
    embeddings = embed_crops(load_pretrained(None, small_project / "models" / model / "model.pt"),
                             load_crops(aligned, faces_table["path"].tolist()), batch_size=64, flip=True)
    rows, columns = np.triu_indices(faces, k=1)
    identities = faces_table["identity"].to_numpy()
    scores = np.einsum("ij,ij->i", embeddings[rows], embeddings[columns])
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(identities[rows] == identities[columns], scores), abs=1e-4)
    assert 0 < metrics["rank1"] <= metrics["rank5"] <= 1
    assert pd.read_csv(tmp_path / "roc.csv").columns.tolist() == ["fpr", "tpr"]


def test_nonmated_people_are_a_tenth_chosen_by_name_whatever_the_order():
    from facerec.evaluation.protocols import nonmated_identities

    names = pd.Series([f"person_{i:02d}" for i in range(40)] * 2)
    chosen = nonmated_identities(names)
    assert len(chosen) == 4 and chosen <= set(names)
    assert nonmated_identities(names.sample(frac=1, random_state=1)) == chosen
    assert nonmated_identities(pd.Series(["solo"])) == set()
    assert len(nonmated_identities(pd.Series(["a", "b"]))) == 1


def test_open_set_identification_keeps_the_nonmated_people_out_of_the_gallery():
    from facerec.evaluation.protocols import identity_set_metrics, nonmated_identities

    rng = np.random.default_rng(0)
    people = [f"p{i}" for i in range(20)]
    faces = pd.DataFrame({"identity": [p for p in people for _ in range(3)],
                          "source": [f"{p}/{k}.jpg" for p in people for k in range(3)]})
    centres = {p: rng.normal(size=8) for p in people}
    embeddings = np.stack([centres[p] + 0.05 * rng.normal(size=8) for p in faces["identity"]])
    metrics, _ = identity_set_metrics(faces, embeddings)
    outsiders = nonmated_identities(faces["identity"])
    assert metrics["nonmated_probe_faces"] == 3 * len(outsiders) == 6
    assert metrics["open_set_gallery_faces"] == len(people) - len(outsiders)
    assert metrics["mated_probe_faces"] == 2 * (len(people) - len(outsiders))
    # Well separated people: every mated search is a hit at either threshold.
    assert metrics["fnir_at_fpir_1e-2"] == metrics["fnir_at_fpir_1e-1"] == 0.0
    # Enrolling the strangers' look-alikes makes their searches hit: at FPIR 1 % the threshold
    # rises above the look-alike scores and every mated search near that score misses too.
    twins = embeddings.copy()
    outsider_rows = faces["identity"].isin(outsiders).to_numpy()
    twins[outsider_rows] = embeddings[~outsider_rows][:outsider_rows.sum()]
    crowded, _ = identity_set_metrics(faces, twins)
    assert crowded["fnir_at_fpir_1e-2"] > 0.5


def test_onnxruntime_embeds_real_faces_as_torch_does_to_the_export_tolerance(small_project):
    """evaluate.runtime onnxruntime against torch (the default) on the small project's LFW
    faces and trained model: the same embeddings to PARITY_TOLERANCE, the same figures."""
    import yaml

    from facerec.evaluation.embedding import embed_crops
    from facerec.evaluation.sets import read_evaluation_set
    from facerec.models.checkpoints import load_pretrained
    from facerec.models.export import PARITY_TOLERANCE
    from facerec.pipeline.evaluate import score_evaluation_set

    model_name = yaml.safe_load((small_project / "params.yaml").read_text())["train"]["model_name"]
    model = load_pretrained(None, small_project / "models" / model_name / "model.pt")
    evaluation = read_evaluation_set(small_project / "data" / "evalsets" / "lfw")
    in_torch, in_onnxruntime = (embed_crops(model, evaluation.crops(), 64, True, runtime=runtime, num_threads=2)
                                for runtime in ("torch", "onnxruntime"))
    assert in_torch.shape == in_onnxruntime.shape == (len(evaluation.faces), in_torch.shape[1])
    assert np.abs(in_torch - in_onnxruntime).max() <= PARITY_TOLERANCE
    (torch_figures, _), (onnx_figures, _) = (score_evaluation_set(evaluation, values)
                                             for values in (in_torch, in_onnxruntime))
    assert onnx_figures["lfw_accuracy"] == pytest.approx(torch_figures["lfw_accuracy"], abs=1e-3)
    assert onnx_figures["roc_auc"] == pytest.approx(torch_figures["roc_auc"], abs=1e-4)
    # What the stage wrote (the default runtime) is what torch gives here.
    written = json.loads((small_project / "metrics" / "evaluate" / "lfw" / f"{model_name}.json").read_text())
    assert written["roc_auc"] == pytest.approx(torch_figures["roc_auc"], abs=1e-6)


def test_onnxruntime_beyond_the_export_tolerance_stops_the_run_and_says_what_to_set(small_project, monkeypatch):
    import yaml

    import facerec.models.export
    from facerec.data.aligned import load_crops, read_aligned_manifest
    from facerec.evaluation.embedding import embed_crops
    from facerec.models.checkpoints import load_pretrained

    model_name = yaml.safe_load((small_project / "params.yaml").read_text())["train"]["model_name"]
    model = load_pretrained(None, small_project / "models" / model_name / "model.pt")
    aligned = small_project / "data" / "aligned" / "lfw"
    crops = load_crops(aligned, read_aligned_manifest(aligned)["path"].tolist()[:8])
    monkeypatch.setattr(facerec.models.export, "PARITY_TOLERANCE", -1.0)  # any difference, even none, is too much
    with pytest.raises(facerec.models.export.OnnxParityError, match="runtime: torch in params.yaml"):
        embed_crops(model, crops, 8, True, runtime="onnxruntime")


def test_onnxruntime_is_fp32_only_and_the_params_error_says_so():
    from pydantic import ValidationError

    from facerec.config import EvaluateParams

    with pytest.raises(ValidationError, match="runtime onnxruntime embeds in fp32"):
        EvaluateParams(precision="bf16", runtime="onnxruntime")
    assert EvaluateParams(precision="bf16").precision == "bf16"  # the default runtime, torch, runs any
