"""Training batches on real aligned faces: augmentation presets, workers, resumable order."""

from __future__ import annotations

import pytest
import torch

from facerec.config import AUGMENTATION_PRESETS, AugmentParams, ConfigError, TrainParams, parse_params
from facerec.data.aligned import load_crops, read_aligned_manifest
from facerec.training.batches import epoch_order, training_batches


@pytest.fixture(scope="module")
def faces(small_project) -> tuple[torch.Tensor, torch.Tensor]:
    aligned_dir = small_project / "data" / "aligned" / "train"
    paths = read_aligned_manifest(aligned_dir)["path"].tolist()[:40]
    return load_crops(aligned_dir, paths), torch.arange(40) % 7


def _all(faces, params: AugmentParams, workers: int = 0, start: int = 0, total: int = 6) -> list:
    crops, labels = faces
    return list(training_batches(crops, labels, params, batch_size=8, steps_per_epoch=4, seed=3,
                                 start=start, total=total, workers=workers))


def test_batches_do_not_depend_on_workers_or_on_the_step_a_run_resumes_at(faces):
    strong = AUGMENTATION_PRESETS["strong"]
    in_process = _all(faces, strong)
    with_workers = _all(faces, strong, workers=2)
    resumed = _all(faces, strong, start=3)
    assert len(in_process) == len(with_workers) == 6 and len(resumed) == 3
    for (images, labels), (other_images, other_labels) in zip(in_process, with_workers):
        assert torch.equal(images, other_images) and torch.equal(labels, other_labels)
    for (images, _), (other_images, _) in zip(in_process[3:], resumed):
        assert torch.equal(images, other_images)
    # Epoch 2 (steps 4, 5) is a new shuffle, not a repeat of epoch 1.
    assert not torch.equal(in_process[4][1], in_process[0][1])


def test_each_preset_changes_the_crops_as_it_says(faces):
    crops, labels = faces
    untouched, _ = _all(faces, AUGMENTATION_PRESETS["none"], total=1)[0]
    originals = crops[epoch_order(seed=3, epoch=0, count=len(crops))[:8]]
    assert torch.equal(untouched, originals)  # "none" hands the crops over as they are

    flipped, _ = _all(faces, AugmentParams(flip=1.0), total=1)[0]
    assert torch.equal(flipped, originals.flip(-1))

    grey, _ = _all(faces, AugmentParams(flip=0.0, greyscale=1.0), total=1)[0]
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    assert not torch.equal(grey, originals)

    strong, _ = _all(faces, AUGMENTATION_PRESETS["strong"], total=1)[0]
    assert strong.shape == originals.shape and strong.dtype == torch.uint8
    changed = (strong.float() - originals.float()).abs().mean(dim=(1, 2, 3))
    assert (changed > 1.0).float().mean() > 0.5, "most crops should differ visibly under the strong preset"


def test_presets_are_data_in_params_and_a_wrong_name_or_range_is_named(small_project):
    import yaml

    raw = yaml.safe_load((small_project / "params.yaml").read_text())
    custom = {**raw["train"], "augmentation": "mine",
              "augmentations": {"mine": {"flip": 0.5, "crop_scale": [0.8, 1.0], "blur": 0.1}}}
    assert TrainParams.model_validate(custom).augment_params().crop_scale == (0.8, 1.0)
    with pytest.raises(ConfigError, match=r"train: .*augmentation 'heavy' is not one of the augmentations"):
        parse_params({**raw, "train": {**raw["train"], "augmentation": "heavy"}})
    with pytest.raises(ConfigError, match=r"crop_scale must be a range"):
        parse_params({**raw, "train": {**custom, "augmentations": {"mine": {"crop_scale": [1.0, 0.5]}}}})
