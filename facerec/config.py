"""Typed parameters for every section of ``params.yaml``.

Validation happens once, before any stage does work: an unknown key or a value of the
wrong type raises :class:`ConfigError` naming the dotted key (``train.head.margin``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from facerec.registry import BACKBONES, DETECTORS, HEADS, PEER_BACKBONES, PEERS


class ConfigError(ValueError):
    """params.yaml is invalid; the message names every offending key."""


def _file_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.]+", name):
        raise ValueError(f"{name!r}: names of sets and models become file and stage names: use letters, digits, "
                         "_ and . only")
    return name


# A set's or model's name: part of file names and of DVC's stage names (``evaluate_zoo@<model>-<set>``).
Name = Annotated[str, AfterValidator(_file_name)]


# Names of the pluggable parts, checked against their registries (facerec.registry).
BackboneName = Annotated[str, AfterValidator(BACKBONES.check)]
HeadName = Annotated[str, AfterValidator(HEADS.check)]
DetectorName = Annotated[str, AfterValidator(DETECTORS.check)]


class _Section(BaseModel):
    # Unknown keys are typos until proven otherwise: refuse them instead of ignoring them.
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Keys that cannot change what the section's stage produces (only how fast): left out of
    # the stage's params in dvc.yaml, so changing them reruns nothing. Each is backed by a
    # test that runs the stage both ways and compares the outputs (tests/test_reproducible.py).
    RESULT_NEUTRAL: ClassVar[tuple[str, ...]] = ()


class PhotoSet(_Section):
    """A folder (or list) of photos that goes through detect, align and gate."""

    images: Path = Field(description="folder of identity sub-folders of photos, or a .csv/.parquet list "
                                     "with columns path, identity")
    detect: dict[str, Any] = Field(
        default_factory=dict,
        description="detect options for this set over the detect section, e.g. {whole_image_fallback: true, "
                    "min_face_size: 20} for tight crops")

    @model_validator(mode="before")
    @classmethod
    def _a_mapping(cls, value: object) -> object:
        if isinstance(value, (str, Path)):
            raise ValueError(f"give the set as {{images: {value}}} (dvc.yaml reads its images key)")
        return value


class DataParams(_Section):
    sets: dict[Name, PhotoSet] = Field(
        description="name -> photo set ({images: folder or list, detect: per-set detect options})")
    train_set: str = Field("train", description="which of `sets` trains the model")
    holdout_identities: int = Field(
        0, ge=0, description="people of train_set kept out of training (chosen by name), for an evaluation "
                             "set of kind identities with people: heldout")

    @model_validator(mode="after")
    def _train_set_exists(self) -> "DataParams":
        if self.train_set not in self.sets:
            raise ValueError(f"train_set: {self.train_set!r} is not one of sets: {', '.join(self.sets)}")
        return self


class ComputeParams(_Section):
    """Where the photo and face work runs (detection, the peers' embeddings): processes on
    this machine or a Dask cluster (facerec.runtime.engine)."""

    # The whole section: each photo is detected alone and each face embedded alone, wherever
    # and in however many processes (tests/test_engine.py, tests/test_detect_determinism.py).
    RESULT_NEUTRAL = ("engine", "workers", "scheduler")

    engine: Literal["local", "dask"] = Field(
        "local", description="local: a process pool on this machine; dask: a Dask cluster (package distributed)")
    workers: int = Field(
        2, ge=1, description="worker processes: the local pool's, or the LocalCluster's that dask starts")
    scheduler: str | None = Field(
        None, description="dask: the address of a running cluster's scheduler (tcp://host:8786); null starts a "
                          "LocalCluster of `workers` single-threaded processes on this machine")

    @model_validator(mode="after")
    def _scheduler_is_dask(self) -> "ComputeParams":
        if self.scheduler is not None and self.engine != "dask":
            raise ValueError(f"scheduler {self.scheduler!r} is a Dask cluster's: set engine: dask, or scheduler: null")
        return self


class DetectParams(_Section):
    # Each photo is detected alone, on one thread per process (facerec.faces.detectors.mtcnn).
    RESULT_NEUTRAL = ("batch_size", "cache")

    backend: DetectorName = Field(
        "mtcnn", description="mtcnn (offline, weights inside facenet-pytorch) or yolo (weights file)")
    weights: Path | None = Field(None, description="ultralytics YOLO face model (.pt), backend yolo only")
    yolo_image_size: int = Field(640, ge=32, description="YOLO inference size in px")
    min_face_size: int = Field(40, ge=8)
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    min_score: float = Field(0.9, ge=0.0, le=1.0)
    subject_rule: Literal["largest", "central", "score"] = "largest"
    whole_image_fallback: bool = Field(
        False, description="photos that are already tight face crops: no face found -> the whole image")
    max_image_pixels: int = Field(40_000_000, gt=0)
    min_image_side: int = Field(32, gt=0)
    max_detect_side: int = Field(
        1600, ge=64, description="larger photos are shrunk to this long side for detection only")
    batch_size: int = Field(32, ge=1, description="photos per detector call (and per task sent to a worker)")
    cache: Path | None = Field(
        Path(".cache/facerec/detect.sqlite"),
        description="results by file content, so reruns only detect new photos; null disables")

    @model_validator(mode="after")
    def _yolo_needs_weights(self) -> "DetectParams":
        if self.backend == "yolo" and self.weights is None:
            raise ValueError("backend yolo needs detect.weights: the path of a YOLO face model (.pt)")
        return self


class AlignParams(_Section):
    size: Literal[112] = 112
    jpeg_quality: int = Field(95, ge=50, le=100)


class GateParams(_Section):
    min_images_per_identity: int = Field(
        2, ge=1, description="the training set fails its data gate if an identity has fewer photos")
    min_pixel_std: float = Field(2.0, ge=0, description="an aligned crop with less contrast is blank")


class HeadParams(_Section):
    type: HeadName = Field(
        "arcface", description="margin head (facerec.models.heads); combined = insightface's (m1, m2, m3)")
    scale: float = Field(64.0, gt=0)
    margin: float = Field(0.5, ge=0.0, lt=3.14159, description="arcface: angular m; cosface: cosine m; adaface: m")
    m1: float = Field(1.0, ge=1.0, description="combined: multiplicative angular margin")
    m2: float = Field(0.5, ge=0.0, lt=3.14159, description="combined: additive angular margin")
    m3: float = Field(0.0, ge=0.0, description="combined: additive cosine margin")
    h: float = Field(0.333, gt=0.0, description="adaface: how strongly the feature norm scales the margin")
    t_alpha: float = Field(0.01, gt=0.0, le=1.0, description="adaface: momentum of the running norm statistics")


class AugmentParams(_Section):
    """Random changes to each training crop; every probability is per crop."""

    flip: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip")
    crop_scale: tuple[float, float] = Field(
        (1.0, 1.0), description="random resized crop: area range kept, as a fraction of the crop")
    crop_ratio: tuple[float, float] = Field((1.0, 1.0), description="random resized crop: aspect range")
    brightness: float = Field(0.0, ge=0, description="colour jitter: factor range 1 ± this")
    contrast: float = Field(0.0, ge=0)
    saturation: float = Field(0.0, ge=0)
    greyscale: float = Field(0.0, ge=0, le=1, description="probability of a greyscale crop")
    blur: float = Field(0.0, ge=0, le=1, description="probability of a Gaussian blur")
    blur_sigma: tuple[float, float] = Field((0.1, 1.5), description="blur: sigma range in px")

    @model_validator(mode="after")
    def _ordered_ranges(self) -> "AugmentParams":
        for name in ("crop_scale", "crop_ratio", "blur_sigma"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be a range 0 < low <= high, got {[low, high]}")
        if self.crop_scale[1] > 1:
            raise ValueError(f"crop_scale cannot keep more than the whole crop, got {list(self.crop_scale)}")
        return self


AUGMENTATION_PRESETS = {
    "none": AugmentParams(flip=0.0),
    "flip": AugmentParams(),
    "mild": AugmentParams(crop_scale=(0.85, 1.0), crop_ratio=(0.9, 1.1), brightness=0.2, contrast=0.2,
                          saturation=0.2, greyscale=0.05),
    "strong": AugmentParams(crop_scale=(0.7, 1.0), crop_ratio=(0.85, 1.15), brightness=0.3, contrast=0.3,
                            saturation=0.3, greyscale=0.1, blur=0.2),
}


class FinetuneParams(_Section):
    """How a backbone started from ``init_from`` is trained on the new people."""

    frozen_epochs: float = Field(
        0.0, ge=0, description="the backbone's weights stay fixed for these first epochs: the new head learns alone")
    backbone_lr_scale: float = Field(
        1.0, gt=0, le=1, description="the backbone's learning rate as a share of lr (the head's is lr)")
    head_init: Literal["class_means", "random"] = Field(
        "class_means", description="class_means: each person's centre starts at the mean of their embeddings by "
                                   "the started-from backbone (weight imprinting); random: a fresh head")


class DistillParams(_Section):
    """The student learns the teacher's embeddings of the training faces (train.teacher)."""

    loss: Literal["cosine", "l2", "similarity"] = Field(
        "cosine", description="cosine: 1 - cos(student, teacher); l2: squared distance of the normalised "
                              "embeddings; similarity: the batch's cosine-similarity matrices matched (relational)")
    weight: float = Field(1.0, gt=0, description="the distillation term's weight")
    margin_weight: float = Field(
        1.0, ge=0, description="the margin loss's weight beside it; 0 = the teacher alone (no head is trained)")


class TrainParams(_Section):
    # Each crop's augmentation is seeded by its position; resumed runs continue exactly.
    # (num_threads is not neutral: 1 and 2 threads give other bits after a few steps.)
    RESULT_NEUTRAL = ("workers", "checkpoint_every")

    model_name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    backbone: BackboneName = Field("mobilefacenet", description="any registered backbone (`facerec zoo list`)")
    embedding_size: int = Field(512, gt=0)
    stem_stride: Literal[1, 2] = Field(
        1, description="iresnet: 2 runs every stage at half the side, ~4x fewer FLOPs (insightface: 1)")
    head: HeadParams = HeadParams()
    epochs: int = Field(ge=0, description="0 keeps the started-from weights (init_from) as they are")
    init_from: str | None = Field(
        None, description="a zoo entry of the backbone's architecture (a checkpoint, or the peer sface_2021dec for "
                          "backbone sface) whose weights training starts from; null = random initialisation")
    finetune: FinetuneParams = FinetuneParams()
    teacher: str | None = Field(
        None, description="a zoo entry (peer or checkpoint) whose embeddings of the training faces the student "
                          "learns (the teacher stage computes them once)")
    distill: DistillParams = DistillParams()
    adaptation: Literal["none", "whitening"] = Field(
        "none", description="whitening: a linear map after the backbone fitted on the training people "
                            "(within-class covariance normalisation), kept only if the validation people gain")
    batch_size: int = Field(64, ge=2)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd momentum; adamw's beta1")
    weight_decay: float = Field(5e-4, ge=0, description="on weights only, not on norms and biases")
    warmup_epochs: float = Field(1.0, ge=0)
    schedule: Literal["poly", "cosine", "step"] = Field("poly", description="after warm-up, stepped per iteration")
    poly_power: float = Field(2.0, gt=0)
    step_epochs: list[float] = Field(
        [], description="schedule step: epochs at which the lr is multiplied by step_gamma")
    step_gamma: float = Field(0.1, gt=0, le=1)
    grad_clip: float | None = Field(None, gt=0, description="max global gradient norm; null = no clipping")
    checkpoint_every: int = Field(200, ge=0, description="steps between resumable training states; 0 = none")
    validation_identities: int = Field(
        0, ge=0, description="identities held out of training to select the model on; 0 = keep the last")
    validation_metric: Literal["accuracy", "roc_auc", "tar_at_far_1e-2", "tar_at_far_1e-3"] = Field(
        "tar_at_far_1e-2", description="verification over every pair of the held-out faces, once per epoch")
    patience: int = Field(0, ge=0, description="stop after this many validations without improvement; 0 = never")
    min_delta: float = Field(0.0, ge=0.0, description="smallest validation gain that counts as an improvement")
    min_images_per_identity: int = Field(2, ge=1)
    augmentation: str = Field("flip", description="the name of one of `augmentations`")
    augmentations: Annotated[dict[str, AugmentParams],
                             AfterValidator(lambda own: {**AUGMENTATION_PRESETS, **own})] = Field(
        default_factory=dict, validate_default=True,
        description="your own presets by name, beside (or replacing) the built-in ones")
    workers: int = Field(1, ge=0, description="DataLoader processes preparing batches; 0 = in the training process")
    sample_rate: float = Field(
        1.0, gt=0, le=1, description="Partial FC: share of the class centres scored each step (1 = all)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda where a GPU is visible")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="autocast; auto = bf16 on GPUs that have it else fp16 (grad scaler), "
                            "bf16 on CPUs with native bf16 else fp32")
    channels_last: bool = Field(True, description="NHWC memory format (faster convolutions on CPU and GPU)")
    compile: bool = Field(False, description="torch.compile the backbone (minutes of compiling first)")
    num_threads: int = Field(2, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _stem_stride_is_iresnet(self) -> "TrainParams":
        if self.stem_stride != 1 and not self.backbone.startswith("iresnet"):
            raise ValueError(f"stem_stride applies to the iresnets only, not {self.backbone}")
        return self

    @model_validator(mode="after")
    def _steps_have_a_gradient(self) -> "TrainParams":
        if self.epochs == 0 and self.init_from is None:
            raise ValueError("epochs: 0 trains nothing: it needs init_from (weights to keep as they are)")
        if self.distill.margin_weight == 0 and self.teacher is None:
            raise ValueError("distill.margin_weight: 0 leaves no loss without a teacher")
        if self.distill.margin_weight == 0 and self.finetune.frozen_epochs > 0:
            raise ValueError("finetune.frozen_epochs trains the head alone, which distill.margin_weight: 0 removes")
        return self

    @model_validator(mode="after")
    def _known_augmentation(self) -> "TrainParams":
        if self.augmentation not in self.augmentations:
            raise ValueError(f"augmentation {self.augmentation!r} is not one of the augmentations: "
                             f"{', '.join(self.augmentations)}")
        return self

    def augment_params(self) -> AugmentParams:
        return self.augmentations[self.augmentation]

    def backbone_options(self) -> dict:
        """Builder arguments beyond the name and embedding size (recorded in the checkpoint)."""
        return {"stem_stride": self.stem_stride} if self.stem_stride != 1 else {}


class LfwSet(_Section):
    """LFW's protocol on a photo set: View 2's 10 folds of pairs.txt (View 1 too when given),
    plus every pair and Rank-1/5 and open-set search among the protocol's faces."""

    kind: Literal["lfw"]
    photos: str = Field(description="the data.sets entry holding the images that the pairs files name")
    pairs: Path = Field(description="View 2 pairs.txt")
    view1_pairs: list[Path] = Field(
        [], description="View 1 [pairsDevTrain.txt, pairsDevTest.txt]; empty: View 1 is not scored",
        min_length=0, max_length=2)

    @model_validator(mode="after")
    def _view1_is_a_train_test_pair(self) -> "LfwSet":
        if len(self.view1_pairs) == 1:
            raise ValueError("view1_pairs: give both files, [pairsDevTrain.txt, pairsDevTest.txt], or none")
        return self


class IdentitiesSet(_Section):
    """People of a photo set: every genuine and impostor pair, Rank-1/5 (each person's first
    photo is the gallery) and open-set FNIR at FPIR (a tenth of the people not enrolled)."""

    kind: Literal["identities"]
    photos: str = Field(description="the data.sets entry")
    people: Literal["all", "heldout"] = Field(
        "all", description="heldout: only the data.holdout_identities people that training never sees")
    pairs: Path | None = Field(
        None, description="a pairs file scored 10-fold too (pairs_accuracy): LFW's pairs.txt format, or a .csv "
                          "with columns path1, path2, genuine and optionally fold (paths as in the photo set)")


class BinSet(_Section):
    """An insightface verification set (lfw.bin, cfp_fp.bin, agedb_30.bin): 10 folds of its pairs."""

    kind: Literal["bin"]
    path: Path = Field(description="the .bin file")


EvaluationSet = Annotated[LfwSet | IdentitiesSet | BinSet, Field(discriminator="kind")]


class EvaluateParams(_Section):
    RESULT_NEUTRAL = ("num_threads",)  # inference gives the same bits on 1 or 2 threads

    flip: bool = True
    batch_size: int = Field(128, ge=1)
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    runtime: Literal["torch", "onnxruntime"] = Field(
        "torch", description="what runs checkpoints: torch (any precision, the model's device) or onnxruntime "
        "(fp32, CPU; checked against torch on the first batch)")
    num_threads: int = Field(2, ge=1)
    sets: dict[Name, EvaluationSet] = Field(
        default_factory=dict, description="name -> evaluation set; every model is scored on each")

    @model_validator(mode="after")
    def _onnxruntime_in_fp32(self) -> "EvaluateParams":
        if self.runtime == "onnxruntime" and self.precision != "fp32":
            raise ValueError(f"runtime onnxruntime embeds in fp32: set precision fp32, not {self.precision!r}, "
                             "or runtime torch")
        return self


class BenchmarkParams(_Section):
    warmup_runs: int = Field(10, ge=0)
    timed_runs: int = Field(100, ge=1)
    throughput_batch_sizes: list[int] = [1, 16, 64]
    num_threads: int = Field(2, ge=1)


class ZooEntry(_Section):
    """A published model to rank beside ours: a registered architecture with its weights file,
    or a peer whose weights ship in a package (``facerec.models.peers``, no path)."""

    name: Name = Field(description="its name on the leaderboard (the key in params.yaml's zoo)")
    arch: str = Field(description="a registered architecture (`facerec zoo list`) or a peer")
    path: Path | None = Field(None, description="the checkpoint file (any layout `facerec zoo inspect` reads)")

    @model_validator(mode="after")
    def _known_arch(self) -> "ZooEntry":
        if self.arch in PEERS:
            if self.path is not None:
                raise ValueError(f"{self.arch} is a peer whose weights ship in its package: give no path")
        elif self.arch in BACKBONES:
            if self.path is None:
                raise ValueError(f"{self.arch} needs the path of its checkpoint file")
        else:
            raise ValueError(f"unknown arch {self.arch!r}; known: {', '.join([*BACKBONES.names, *PEERS.names])}")
        return self


class SearchRange(_Section):
    """One searched hyperparameter: [low, high], optionally a step; log-uniform when ``log``."""

    low: float
    high: float
    step: float | None = Field(None, gt=0, description="grid step (keeps the suggested values readable)")
    log: bool = Field(False, description="sample on a log scale (learning rate, weight decay)")

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: object) -> object:
        # params.yaml writes ranges as [low, high] or [low, high, step].
        if isinstance(value, (list, tuple)) and len(value) in (2, 3):
            return dict(zip(("low", "high", "step"), value))
        return value

    @model_validator(mode="after")
    def _ordered(self) -> "SearchRange":
        if not self.low < self.high:
            raise ValueError(f"low {self.low} must be below high {self.high}")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("a log range needs low > 0 and no step")
        return self


def _default_head_ranges() -> dict[str, dict[str, SearchRange]]:
    scale = SearchRange(low=16, high=64, step=1)
    return {"arcface": {"margin": SearchRange(low=0.2, high=0.8, step=0.01), "scale": scale},
            "cosface": {"margin": SearchRange(low=0.1, high=0.5, step=0.01), "scale": scale},
            "adaface": {"margin": SearchRange(low=0.2, high=0.6, step=0.01), "scale": scale},
            "combined": {"m2": SearchRange(low=0.1, high=0.5, step=0.01),
                         "m3": SearchRange(low=0.0, high=0.3, step=0.01), "scale": scale}}


class TuneParams(_Section):
    """Optuna's search of the margin head (and optionally lr and weight decay) on short trainings."""

    n_trials: int = Field(10, ge=1, description="finished trials (complete or pruned) the study runs to")
    timeout_minutes: float | None = Field(None, gt=0, description="start no trial after this; null = no limit")
    epochs: int = Field(2, ge=1, description="each trial's training length; validated after every epoch")
    identities: int | None = Field(
        None, ge=4, description="train each trial on this many people (seeded sample) for speed; null = all")
    heads: Annotated[dict[HeadName, dict[str, SearchRange]],
                     AfterValidator(lambda own: {**_default_head_ranges(), **own})] = Field(
        default_factory=dict, validate_default=True,
        description="per train.head.type: head parameter -> range, replacing the default "
                    "ranges of that head; the chosen head's entry is searched")
    lr: SearchRange | None = Field(None, description="search the learning rate too")
    weight_decay: SearchRange | None = Field(None, description="search the weight decay too")
    pruner_startup_trials: int = Field(2, ge=0, description="median pruner: trials finished before pruning starts")
    storage: str | None = Field(None, description="an RDB URL shared by several workers; null = SQLite in models/tune/")
    seed: int = 0

    @model_validator(mode="after")
    def _head_fields_exist(self) -> "TuneParams":
        known = set(HeadParams.model_fields) - {"type"}
        for head, ranges in self.heads.items():
            unknown = sorted(set(ranges) - known)
            if unknown:
                raise ValueError(f"heads.{head}: {', '.join(unknown)} not head parameters ({', '.join(sorted(known))})")
        return self


class LeaderboardParams(_Section):
    sort_by: str = "lfw_accuracy"


# Evidently's drift tests for numerical columns (evidently.legacy.calculations.stattests).
DriftMethod = Literal["ks", "wasserstein", "psi", "kl_div", "jensenshannon", "hellinger", "anderson",
                      "cramer_von_mises", "ed", "es", "mannw", "empirical_mmd", "t_test"]


class MonitorParams(_Section):
    """Drift of a set of photos against the training set (the reference), on per-face features."""

    # on_drift is read by the face-monitor flow, not by the stage.
    RESULT_NEUTRAL = ("num_threads", "on_drift")

    current_set: str = Field("lfw", description="which of data.sets to compare with the training set")
    max_faces: int = Field(2000, ge=10, description="seeded random sample of faces per set, to keep it fast")
    components: int = Field(5, ge=0, description="principal components of the embeddings (PCA on the reference)")
    drift_share: float = Field(0.5, gt=0, le=1, description="the set has drifted when this share of features has")
    method: DriftMethod | None = Field(
        None, description="drift test of every feature; null: Evidently's choice (K-S up to 1000 faces, else "
                          "normed Wasserstein)")
    threshold: float | None = Field(None, gt=0, description="the test's threshold; null: the test's default")
    on_drift: Literal["warn", "fail"] = Field(
        "warn", description="the face-monitor flow posts a warning artifact, or fails its run")
    batch_size: int = Field(128, ge=1)
    runtime: Literal["torch", "onnxruntime"] = Field(
        "torch", description="what embeds the faces, in fp32: onnxruntime (checked against torch on the "
        "first batch) or torch")
    num_threads: int = Field(2, ge=1)
    seed: int = 0


class Params(_Section):
    data: DataParams
    compute: ComputeParams = ComputeParams()
    detect: DetectParams = DetectParams()
    align: AlignParams = AlignParams()
    gate: GateParams = GateParams()
    train: TrainParams
    evaluate: EvaluateParams = EvaluateParams()
    benchmark: BenchmarkParams = BenchmarkParams()
    leaderboard: LeaderboardParams = LeaderboardParams()
    monitor: MonitorParams = MonitorParams()
    tune: TuneParams = TuneParams()
    zoo: dict[Name, ZooEntry] = Field(
        default_factory=dict, description="name -> published model ranked beside ours ({arch, path})")

    @model_validator(mode="before")
    @classmethod
    def _zoo_names_from_keys(cls, raw: object) -> object:
        # The name is the key (dvc.yaml's matrix names stages by it); the entry carries it too.
        if isinstance(raw, dict) and isinstance(raw.get("zoo"), dict):
            raw = {**raw, "zoo": {name: {**entry, "name": name} if isinstance(entry, dict) else entry
                                  for name, entry in raw["zoo"].items()}}
        return raw

    @model_validator(mode="after")
    def _distinct_names(self) -> "Params":
        if self.train.model_name in self.zoo:
            raise ValueError(f"zoo name {self.train.model_name!r} is train.model_name: the two would share files")
        return self

    @model_validator(mode="after")
    def _transfer_names_zoo_entries(self) -> "Params":
        train = self.train
        for key in ("init_from", "teacher"):
            name = getattr(train, key)
            if name is not None and name not in self.zoo:
                raise ValueError(f"train.{key}: {name!r} is not one of zoo: {', '.join(self.zoo) or 'none'}")
        if train.init_from is not None:
            entry = self.zoo[train.init_from]
            arch = PEER_BACKBONES.get(entry.arch, entry.arch)
            if arch != train.backbone:
                raise ValueError(f"train.init_from: {train.init_from}'s weights are a {arch}'s, "
                                 f"not train.backbone's ({train.backbone})")
        return self

    @model_validator(mode="after")
    def _evaluation_sets_name_photo_sets(self) -> "Params":
        for name, spec in self.evaluate.sets.items():
            if isinstance(spec, BinSet):
                continue
            if spec.photos not in self.data.sets:
                raise ValueError(f"evaluate.sets.{name}.photos: {spec.photos!r} is not one of data.sets: "
                                 f"{', '.join(self.data.sets)}")
            if isinstance(spec, IdentitiesSet) and spec.people == "heldout" and (
                    spec.photos != self.data.train_set or not self.data.holdout_identities):
                raise ValueError(f"evaluate.sets.{name}: people: heldout needs photos: {self.data.train_set} "
                                 "(data.train_set) and data.holdout_identities > 0")
        return self

    @model_validator(mode="after")
    def _per_set_detect_options_are_detect_options(self) -> "Params":
        for name in self.data.sets:
            self.detect_params(name)
        return self

    def detect_params(self, photo_set: str) -> DetectParams:
        """The detect options of one photo set: its own over the detect section's."""
        overrides = self.data.sets[photo_set].detect
        neutral = sorted(set(overrides) & set(DetectParams.RESULT_NEUTRAL))
        if neutral:
            raise ValueError(f"data.sets.{photo_set}.detect: {', '.join(neutral)} only change speed; "
                             "set them in the detect section")
        try:
            return DetectParams.model_validate({**self.detect.model_dump(), **overrides})
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors())
            raise ValueError(f"data.sets.{photo_set}.detect: {problems}") from None

    @model_validator(mode="after")
    def _monitored_set_exists(self) -> "Params":
        if self.monitor.current_set not in self.data.sets:
            raise ValueError(f"monitor.current_set: {self.monitor.current_set!r} is not one of data.sets: "
                             f"{', '.join(self.data.sets)}")
        if self.monitor.current_set == self.data.train_set:
            raise ValueError(f"monitor.current_set: {self.monitor.current_set!r} is data.train_set, the reference "
                             "it is compared with; name the set of new photos")
        return self


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid parameters"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check the spelling against params.yaml)")
        elif not key:  # a check across sections: its message names the keys, the input is the whole file
            lines.append(f"  {item['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def parse_params(raw: dict, source: str = "params.yaml") -> Params:
    """Validate a parsed params mapping; raise ConfigError naming every bad key."""
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``. Relative data paths stay relative to its folder."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; run from the project root") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw, str(path))
