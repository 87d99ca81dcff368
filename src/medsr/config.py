"""Typed, validated parameters: params.yaml (plus optional overlays) -> one frozen `Params` object.

Each section of params.yaml is declared once, here, as a pydantic dataclass: its fields, types, ranges
and enums. Everything else derives from these declarations: `medsr` commands validate through
`params_from_dict`, the JSON schema that Snakemake validates its config with is exported from them
(`workflow/schemas/params.schema.json`, `medsr schema`; tests/test_config.py proves the committed copy is
current), and model files store sections through `to_jsonable`. A stage receives only the sections it
declares in the stage table (`medsr.stages`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from medsr.errors import MedsrError

CLASSES = ("healthy", "unhealthy")  # label index 0, 1; the positive class is "unhealthy"
NULL_CLASS = len(CLASSES)  # classifier-free guidance's "null" label index (Section 3.1.7)
SPLITS = ("train", "val", "test")  # val is carved from train once, at download; test is read by classify/evaluate only
EVAL_SPLITS = ("val", "test")  # what generate/regress super-resolve and classify classifies: val for operating points

# --- enums: each declared once --------------------------------------------------------------
Source = Literal["mni", "synthetic", "kaggle", "url", "folder", "nifti", "dicom"]
VOLUME_SOURCES = ("nifti", "dicom")  # sources of 3-D volumes: slices are cut per subject, splits drawn by subject
SliceAxis = Literal["sagittal", "coronal", "axial"]  # the RAS axes 0, 1, 2 after reorientation to canonical
DegradeModel = Literal["gaussian", "kspace"]  # Eq. 1.1 | k-space truncation + complex noise (magnitude: Rician)
KspaceWindow = Literal["none", "hamming", "tukey"]
# oracle hands the generator the true label, swapped its opposite (the class-swap audit): both flagged everywhere
Guidance = Literal["null", "predicted", "oracle", "swapped"]
SamplerName = Literal["ancestral", "ddim", "dpmpp", "resshift", "student"]  # resshift samples (only) a resshift model;
# student: one call of a one-step student distilled from a resshift teacher (medsr.diffusion.distill, SinSR)
RESSHIFT_SAMPLERS = ("resshift", "student")  # the samplers of diffusion.process resshift models, and only of them
# one paired test over all replicates | a majority of per-replicate tests | the training run as the unit of
# replication: seed-level t with an image-level variance term | two-level (seeds, images) bootstrap
VerdictRule = Literal["pooled", "majority", "seed_image_t", "two_level_bootstrap"]
DiffusionProcess = Literal["ddpm", "resshift"]  # noise -> HR (Ho et al. 2020) | bicubic -> HR (Yue et al. 2023)
ClassifierDomain = Literal["hr", "bicubic", "sr"]  # the kind of images a classifier is trained on
# torchvision classifier families (weights=None, 1-channel stem, 2-class head): verdicts are reported per architecture
Architecture = Literal["resnet18", "efficientnet_b0", "densenet121", "mobilenet_v3_small", "shufflenet_v2_x1_0"]
GUIDANCE_MODES: tuple[str, ...] = typing.get_args(Guidance)
LEAKING_GUIDANCE: tuple[str, ...] = ("oracle", "swapped")  # modes computed from the true label: never a fair arm
SAMPLERS: tuple[str, ...] = typing.get_args(SamplerName)
Precision = Literal["fp32", "bf16"]  # the sampling network's arithmetic; bf16 (autocast) is CUDA only
DIFFUSION_PROCESSES: tuple[str, ...] = typing.get_args(DiffusionProcess)
CLASSIFIER_DOMAINS: tuple[str, ...] = typing.get_args(ClassifierDomain)
ARCHITECTURES: tuple[str, ...] = typing.get_args(Architecture)
GUIDE_ARCHITECTURE = "resnet18"  # first of every run: predicted guidance's classifier (on bicubic, first train seed)
                                 # and the one the headline metrics and the README's verdicts are of
DATA_DOMAINS = ("hr", "bicubic")  # always trained, on data/<domain>; "sr" only with evaluate.sr_classifier

# --- strict scalar types (YAML's "16" is not silently an integer) -----------------------------
Int = Annotated[int, Field(strict=True)]
PositiveInt = Annotated[int, Field(strict=True, ge=1)]
Seed = Annotated[int, Field(strict=True, ge=0)]
Float = Annotated[float, Field(strict=True)]
Probability = Annotated[float, Field(strict=True, ge=0, le=1)]
Bool = Annotated[bool, Field(strict=True)]
Str = Annotated[str, Field(strict=True)]

_SECTION = ConfigDict(extra="forbid")


def section(cls):
    """A params.yaml section: a frozen pydantic dataclass that refuses unknown keys."""
    return dataclass(frozen=True, config=_SECTION)(cls)


@section
class SyntheticSource:
    train_per_class: PositiveInt
    test_per_class: PositiveInt
    seed: Seed


@section
class MniSource:
    train_per_class: PositiveInt
    test_per_class: PositiveInt
    seed: Seed
    lesion_radius: Annotated[float, Field(strict=True, gt=0.5, le=16)]  # outer radius, HR pixels: the difficulty knob
    lesion_radius_jitter: Annotated[float, Field(strict=True, ge=0, lt=0.5)]  # radii uniform in radius x (1 +- this)
    rim_width: Annotated[float, Field(strict=True, gt=0)]  # thickness of the unhealthy class's rim, HR pixels
    lesion_count: Annotated[tuple[Annotated[int, Field(strict=True, ge=0)], ...], Field(min_length=2, max_length=2)]
    lesion_contrast: Annotated[float, Field(strict=True, gt=0, le=1)]  # fractional intensity drop of a rim


@section
class KaggleSource:
    dataset: Annotated[str, Field(strict=True, pattern=r"^[^/\s]+/[^/\s]+$")]


@section
class UrlSource:
    url: Str
    sha256: Annotated[str, Field(strict=True, pattern=r"^([0-9a-fA-F]{64})?$")]


@section
class FolderSource:
    path: Str


@section
class VolumeSource:
    """data.source nifti | dicom: a folder of volumes plus a CSV `subject,label`, cut into 2-D slices."""
    path: Str  # nifti: <path>/<subject>.nii[.gz] or <path>/<subject>/*.nii[.gz]; dicom: <path>/<subject>/ (series)
    subjects_csv: Str  # the CSV of subject,label ("" = <path>/subjects.csv); label: healthy | unhealthy | class_map key
    axis: SliceAxis  # the slicing axis after reorientation to RAS
    slice_range: Annotated[tuple[Probability, Probability], Field(min_length=2, max_length=2)]  # [lo, hi] share of axis
    min_brain_fraction: Probability  # a slice is a candidate when this share of its pixels is foreground
    slices_per_subject: PositiveInt  # evenly spaced among the candidates of each volume
    percentiles: Annotated[tuple[Annotated[float, Field(strict=True, ge=0, le=100)], ...],
                           Field(min_length=2, max_length=2)]  # per-volume intensity window -> [0, 1]
    test_fraction: Annotated[float, Field(strict=True, gt=0, lt=0.9)]  # share of each class's subjects carved into test


@section
class DataParams:
    source: Source
    image_size: Annotated[int, Field(strict=True, ge=16, le=1024)]
    resize: Literal["center_crop", "resize"]
    on_bad_image: Literal["fail", "skip"]
    val_fraction: Annotated[float, Field(strict=True, gt=0, lt=0.9)]  # share of each class of train carved into val
    split_seed: Seed  # seed of the val carving
    mni: MniSource
    synthetic: SyntheticSource
    kaggle: KaggleSource
    url: UrlSource
    folder: FolderSource
    volumes: VolumeSource
    duplicates: Literal["fail", "drop"]  # an image (near-)duplicated across splits: error naming both, or dropped
    near_duplicate_bits: Annotated[int, Field(strict=True, ge=-1, le=64)]  # pHash Hamming distance <= this: near
    # duplicate candidate (-1: exact duplicates only)
    near_duplicate_correlation: Annotated[float, Field(strict=True, ge=0, le=1)]  # a candidate's pixel correlation
    # must reach this to be a near duplicate
    class_map: Annotated[dict[str, Literal["healthy", "unhealthy"]], Field(min_length=2)]


@section
class DegradeParams:
    scale: Annotated[int, Field(strict=True, ge=2, le=8)]
    blur_sigma: Annotated[float, Field(strict=True, ge=0)]
    noise_std: Annotated[float, Field(strict=True, ge=0, le=0.5)]
    seed: Seed
    model: DegradeModel = "gaussian"  # the default keeps Eq. 1.1 for callers that predate the kspace model
    kspace_window: KspaceWindow = "none"  # kspace model: window over the kept k-space lines against Gibbs ringing


@section
class UNetParams:
    base_channels: PositiveInt
    channel_mult: Annotated[tuple[PositiveInt, ...], Field(min_length=1)]
    num_res_blocks: PositiveInt
    attention_levels: tuple[Seed, ...]
    mid_attention: Bool
    out_attention: Bool
    attention_heads: PositiveInt
    dropout: Annotated[float, Field(strict=True, ge=0, lt=1)]
    norm_groups: PositiveInt
    lr_injection: Literal["concat", "add"]


@section
class ResShiftParams:
    """ResShift (Yue et al. 2023): x_t = x_0 + eta_t (y_0 - x_0) + kappa sqrt(eta_t) eps, t = 1..T."""

    timesteps: Annotated[int, Field(strict=True, ge=1, le=1000)]  # T
    kappa: Annotated[float, Field(strict=True, gt=0)]  # noise scale
    p: Annotated[float, Field(strict=True, gt=0)]  # schedule shape: beta_t = ((t-1)/(T-1))^p (T-1)
    eta_1: Annotated[float, Field(strict=True, gt=0, lt=1)]
    eta_T: Annotated[float, Field(strict=True, gt=0, le=1)]


@section
class DiffusionParams:
    process: DiffusionProcess
    schedule: Literal["linear", "cosine"]
    timesteps: Annotated[int, Field(strict=True, ge=2)]
    beta_start: Annotated[float, Field(strict=True, gt=0, lt=1)]
    beta_end: Annotated[float, Field(strict=True, gt=0, lt=1)]
    cosine_s: Annotated[float, Field(strict=True, ge=0)]
    target: Literal["image", "residual"]
    resshift: ResShiftParams


LearningRate = Annotated[float, Field(strict=True, gt=0)]
Crop = Annotated[int, Field(strict=True, ge=8)]


@section
class TrainSRParams:
    steps: PositiveInt
    batch_size: PositiveInt
    crop: Crop
    learning_rate: LearningRate
    ema_decay: Annotated[float, Field(strict=True, ge=0, lt=1)]
    null_class_prob: Probability
    grad_clip: Annotated[float, Field(strict=True, ge=0)]
    hflip: Bool
    checkpoint_every: PositiveInt
    log_every: PositiveInt
    seed: Seed


@section
class TrainStudentParams:
    """The one-step student distilled from the resshift teacher (SinSR, Wang et al. 2024; medsr.diffusion.distill)."""

    steps: PositiveInt
    batch_size: PositiveInt
    crop: Crop
    learning_rate: LearningRate
    teacher_steps: PositiveInt  # K of the teacher's deterministic sampler F_theta (<= diffusion.resshift.timesteps)
    inverse_weight: Annotated[float, Field(strict=True, ge=0)]  # weight of L_inverse (the learned inverse x_0 -> x_T)
    gt_weight: Annotated[float, Field(strict=True, ge=0)]  # lambda of L_gt (consistency preserving, HR data)
    ema_decay: Annotated[float, Field(strict=True, ge=0, lt=1)]
    null_class_prob: Probability
    grad_clip: Annotated[float, Field(strict=True, ge=0)]
    hflip: Bool
    val_images: Annotated[int, Field(strict=True, ge=2)]  # val images (half per class) of the val criterion
    eval_every: PositiveInt  # steps between val evaluations and resumable checkpoints
    seed: Seed


@section
class TrainRegressionParams:
    steps: PositiveInt
    batch_size: PositiveInt
    crop: Crop
    learning_rate: LearningRate
    seed: Seed


@section
class TrainClassifierParams:
    architectures: Annotated[tuple[Architecture, ...], Field(min_length=1)]  # every one trained per domain and seed
    epochs: PositiveInt  # the maximum: with patience > 0 training may stop earlier (the cosine schedule spans this)
    batch_size: PositiveInt
    learning_rate: LearningRate
    lr_schedule: Literal["cosine", "constant"]
    weight_decay: Annotated[float, Field(strict=True, ge=0)]
    hflip: Bool
    precise_bn: Bool  # BatchNorm statistics recomputed on the train split before every val pass (precise BN)
    patience: Annotated[int, Field(strict=True, ge=0)]  # early stopping: epochs without a lower val loss before
    # training stops (0: off, every one of `epochs` is trained)


@section
class GenerateParams:
    sampler: SamplerName
    steps: PositiveInt
    eta: Probability
    guidance: Annotated[tuple[Guidance, ...], Field(min_length=1)]
    guidance_scale: Annotated[float, Field(strict=True, ge=0)]
    batch_size: PositiveInt
    shards: Annotated[tuple[Seed, ...], Field(min_length=1)]
    samples_per_image: PositiveInt  # N posterior samples per chosen image (1: none beyond the main image)
    sample_eta: Annotated[float, Field(strict=True, gt=0, le=1)]  # DDIM eta of the posterior samples (stochastic)
    posterior_images: Annotated[int, Field(strict=True, ge=0)]  # images per split (half per class) with samples; 0: all
    precision: Precision  # fp32, or bf16 autocast on CUDA (refused on the CPU)


@section
class ClassifyParams:
    batch_size: PositiveInt


@section
class EvaluateParams:
    train_seeds: Annotated[tuple[Seed, ...], Field(min_length=1)]
    sampling_seeds: Annotated[tuple[Seed, ...], Field(min_length=1)]
    bootstrap: Annotated[int, Field(strict=True, ge=100)]
    bootstrap_seed: Seed
    confidence: Annotated[float, Field(strict=True, gt=0.5, lt=1)]
    exact_below: Annotated[int, Field(strict=True, ge=0)]
    val_specificity: Annotated[float, Field(strict=True, gt=0, lt=1)]
    verdict_rule: VerdictRule
    # guidance mode of the SR train images a classifier is also trained on (Q2 for SR): [] none, or one mode
    sr_classifier: Annotated[tuple[Guidance, ...], Field(max_length=1)]
    external: dict[str, Annotated[str, Field(strict=True, min_length=1)]]
    figure_images: Annotated[int, Field(strict=True, ge=1, le=16)]
    lpips_weights: Str
    rcps_alpha: Annotated[float, Field(strict=True, gt=0, lt=1)]  # RCPS: tolerated share of pixels outside interval
    rcps_delta: Annotated[float, Field(strict=True, gt=0, lt=1)]  # RCPS: allowed chance that the bound fails
    error_threshold: Annotated[float, Field(strict=True, gt=0, lt=1)]  # |SR - HR| above which a pixel is "wrong"
    crc_alpha: Annotated[float, Field(strict=True, gt=0, lt=1)]  # conformal risk control: expected FNR bound
    # the learning gate, checked before any verdict (medsr.evaluation.gate): below the floor, or unconverged, the
    # run gives no verdict
    gate_min_hr_val_auroc: Probability  # floor of the HR-trained classifier's AUROC on HR val, every seed and family
    gate_require_converged: Bool  # every classifier's val loss must have stopped improving within its epochs


@section
class Params:
    data: DataParams
    degrade: DegradeParams
    sr_model: UNetParams
    diffusion: DiffusionParams
    train_sr: TrainSRParams
    train_regression: TrainRegressionParams
    train_student: TrainStudentParams
    train_classifier: TrainClassifierParams
    generate: GenerateParams
    classify: ClassifyParams
    evaluate: EvaluateParams


SECTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Params))
UNIQUE_LISTS = ("sr_model.attention_levels", "train_classifier.architectures", "generate.guidance", "generate.shards",
                "evaluate.train_seeds", "evaluate.sampling_seeds")


# --- reading and validating ------------------------------------------------------------------

def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Overlay wins key by key; nested mappings merge, everything else is replaced."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise MedsrError(f"{path}: cannot read parameter file ({err.strerror})") from err
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise MedsrError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise MedsrError(f"{path}: expected a mapping of sections at the top level")
    return loaded


def json_schema() -> dict[str, Any]:
    """The JSON schema of params.yaml, derived from the dataclasses (what Snakemake validates with)."""
    schema = TypeAdapter(Params).json_schema()
    schema["title"] = "medsr parameters"
    schema["description"] = ("The schema of params.yaml, generated from medsr.config by `medsr schema`: "
                             "do not edit by hand.")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def _key_path(parts: Sequence[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _known_keys(parts: Sequence[Any]) -> list[str]:
    cls: Any = Params
    for part in parts:
        hints = typing.get_type_hints(cls, include_extras=True)
        if part not in hints:
            return []
        cls = typing.get_args(hints[part])[0] if typing.get_origin(hints[part]) is Annotated else hints[part]
    return [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []


def _one_line(err: ValidationError, source: str) -> MedsrError:
    """The first error as `source: key.path: message`."""
    first = sorted(err.errors(), key=lambda e: (-len(e["loc"]), str(e["loc"])))[0]  # the most specific key
    loc = [p for p in first["loc"] if p != "[key]"]
    kind = first["type"]
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        known = _known_keys(loc[:-1])
        return MedsrError(f"{source}: {_key_path(loc)}: unknown key (known keys here: {', '.join(known)})")
    if kind == "missing_argument" or kind == "missing":
        return MedsrError(f"{source}: {_key_path(loc)}: required key is missing")
    message = f"{first['msg']}, got {first['input']!r}" if not isinstance(first["input"], dict) else first["msg"]
    if first["input"] is None and "guidance" in _key_path(loc):
        message += " (write the guidance mode in quotes: \"null\"; bare null is YAML's None)"
    return MedsrError(f"{source}: {_key_path(loc)}: {message}")


def _check_consistency(params: Params, source: str) -> None:
    """Rules between keys that a per-field type cannot say."""
    for name in UNIQUE_LISTS:
        values = list(getattr(getattr(params, name.split(".")[0]), name.split(".")[1]))
        if len(set(values)) != len(values):
            raise MedsrError(f"{source}: {name}: lists a value twice ({values})")
    if params.train_classifier.architectures[0] != GUIDE_ARCHITECTURE:
        raise MedsrError(f"{source}: train_classifier.architectures: must start with {GUIDE_ARCHITECTURE} (predicted "
                         f"guidance's classifier and the headline's), "
                         f"got {list(params.train_classifier.architectures)}")
    classifier = params.train_classifier
    if classifier.patience >= classifier.epochs:
        raise MedsrError(f"{source}: train_classifier.patience: {classifier.patience} must be below "
                         f"train_classifier.epochs {classifier.epochs} (0: no early stopping), or no classifier "
                         f"could stop early or count as converged")
    shards = sorted(params.generate.shards)
    if shards != list(range(len(shards))):
        raise MedsrError(f"{source}: generate.shards: must be the ids 0..n-1, got {list(params.generate.shards)}")
    levels = len(params.sr_model.channel_mult)
    bad = [lv for lv in params.sr_model.attention_levels if lv >= levels]
    if bad:
        raise MedsrError(f"{source}: sr_model.attention_levels: level {bad[0]} does not exist "
                         f"(channel_mult has {levels} levels, numbered 0..{levels - 1})")
    widths = [params.sr_model.base_channels * m for m in params.sr_model.channel_mult]
    for width in widths:
        if width % params.sr_model.norm_groups:
            raise MedsrError(f"{source}: sr_model.norm_groups: {params.sr_model.norm_groups} does not divide "
                             f"the level width {width}")
        if width % params.sr_model.attention_heads:
            raise MedsrError(f"{source}: sr_model.attention_heads: {params.sr_model.attention_heads} does not "
                             f"divide the level width {width}")
    resshift = params.diffusion.resshift
    if resshift.eta_1 >= resshift.eta_T:
        raise MedsrError(f"{source}: diffusion.resshift.eta_1: must be below diffusion.resshift.eta_T")
    if (params.diffusion.process == "resshift") != (params.generate.sampler in RESSHIFT_SAMPLERS):
        raise MedsrError(f"{source}: generate.sampler: {params.generate.sampler} cannot sample a "
                         f"diffusion.process {params.diffusion.process} model (the resshift sampler goes with the "
                         f"resshift process, and only with it; so does student)")
    if params.train_student.teacher_steps > resshift.timesteps:
        raise MedsrError(f"{source}: train_student.teacher_steps: {params.train_student.teacher_steps} exceeds "
                         f"diffusion.resshift.timesteps {resshift.timesteps}")
    if params.diffusion.process == "resshift" and params.generate.steps > resshift.timesteps:
        raise MedsrError(f"{source}: generate.steps: {params.generate.steps} exceeds diffusion.resshift.timesteps "
                         f"{resshift.timesteps}")
    if params.diffusion.beta_start >= params.diffusion.beta_end:
        raise MedsrError(f"{source}: diffusion.beta_start: must be below diffusion.beta_end")
    volumes = params.data.volumes
    if volumes.slice_range[0] >= volumes.slice_range[1]:
        raise MedsrError(f"{source}: data.volumes.slice_range: lo must be below hi, got {list(volumes.slice_range)}")
    if volumes.percentiles[0] >= volumes.percentiles[1]:
        raise MedsrError(f"{source}: data.volumes.percentiles: low must be below high, got {list(volumes.percentiles)}")
    mni = params.data.mni
    if mni.lesion_count[0] > mni.lesion_count[1]:
        raise MedsrError(f"{source}: data.mni.lesion_count: [min, max] with min <= max, got {list(mni.lesion_count)}")
    if mni.rim_width >= mni.lesion_radius * (1 - mni.lesion_radius_jitter):
        raise MedsrError(f"{source}: data.mni.rim_width: {mni.rim_width} leaves no core inside the smallest "
                         f"lesion radius {mni.lesion_radius * (1 - mni.lesion_radius_jitter):g}")
    image_size, scale = params.data.image_size, params.degrade.scale
    if image_size % scale:
        raise MedsrError(f"{source}: degrade.scale: {scale} does not divide data.image_size {image_size}")
    for name in ("train_sr", "train_regression", "train_student"):
        crop = getattr(params, name).crop
        if crop > image_size:
            raise MedsrError(f"{source}: {name}.crop: {crop} exceeds data.image_size {image_size}")
        if crop % (scale * 2 ** (levels - 1)):
            raise MedsrError(f"{source}: {name}.crop: {crop} must be a multiple of degrade.scale x "
                             f"2^(levels-1) = {scale * 2 ** (levels - 1)}")
    if image_size % 2 ** (levels - 1):
        raise MedsrError(f"{source}: data.image_size: {image_size} must be a multiple of 2^(levels-1) = "
                         f"{2 ** (levels - 1)} so the U-Net can halve it {levels - 1} times")
    missing = [g for g in params.evaluate.sr_classifier if g not in params.generate.guidance]
    if missing:
        raise MedsrError(f"{source}: evaluate.sr_classifier: {missing[0]} is not one of generate.guidance "
                         f"{list(params.generate.guidance)}")
    bad_names = [n for n in params.evaluate.external if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", n)]
    if bad_names:
        raise MedsrError(f"{source}: evaluate.external.{bad_names[0]}: a set name is letters, digits, _ and -")


def generation_splits(evaluate: EvaluateParams, guidance: str, seed: int) -> tuple[str, ...]:
    """What one generate job super-resolves: val and test; and train too for the SR images the SR-trained
    classifier learns from (evaluate.sr_classifier's mode at the first sampling seed)."""
    trains = guidance in evaluate.sr_classifier and seed == evaluate.sampling_seeds[0]
    return ("train", *EVAL_SPLITS) if trains else EVAL_SPLITS


def load_raw(paths: Sequence[str | Path]) -> dict[str, Any]:
    if not paths:
        raise MedsrError("no parameter file given")
    merged: dict[str, Any] = {}
    for path in paths:
        merged = deep_merge(merged, read_yaml(path))
    return merged


_YAML12_FLOAT = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+$")


def yaml12_floats(value: Any) -> Any:
    """Exponent floats without a dot (`1e-05`: YAML 1.2, what `dvc exp run -S` writes back) as floats;
    PyYAML and Snakemake read them as strings (YAML 1.1)."""
    if isinstance(value, Mapping):
        return {k: yaml12_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [yaml12_floats(v) for v in value]
    if isinstance(value, str) and _YAML12_FLOAT.match(value):
        return float(value)
    return value


def _floats_from_ints(cls: Any, raw: Any) -> Any:
    """An integer where a float is declared (`learning_rate: 1`) is that float: JSON schema's "number"."""
    if not dataclasses.is_dataclass(cls) or not isinstance(raw, Mapping):
        return raw
    hints = typing.get_type_hints(cls, include_extras=True)
    out = dict(raw)
    for name, value in raw.items():
        hint = hints.get(name)
        base = typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint
        if base is float and isinstance(value, int) and not isinstance(value, bool):
            out[name] = float(value)
        elif dataclasses.is_dataclass(base):
            out[name] = _floats_from_ints(base, value)
    return out


def params_from_dict(raw: Mapping[str, Any], source: str = "params") -> Params:
    if not isinstance(raw, Mapping):
        raise MedsrError(f"{source}: expected a mapping of sections at the top level")
    raw = _floats_from_ints(Params, yaml12_floats(raw))
    try:
        params = TypeAdapter(Params).validate_python(raw)
    except ValidationError as err:
        raise _one_line(err, source) from None
    _check_consistency(params, source)
    return params


def load_params(paths: Sequence[str | Path] = ("params.yaml",)) -> Params:
    """Merge the YAML files in order, validate, and return the typed parameters."""
    source = " + ".join(str(p) for p in paths)
    return params_from_dict(load_raw(paths), source)


def section_from_dict(cls: type, raw: Mapping[str, Any]) -> Any:
    """A section (e.g. `UNetParams`) from plain data, such as a model file's metadata."""
    try:
        return TypeAdapter(cls).validate_python(_floats_from_ints(cls, dict(raw)))
    except (ValidationError, TypeError) as err:
        raise MedsrError(f"{cls.__name__}: incomplete or mistyped section "
                         f"({str(err).splitlines()[0] if str(err) else err})") from None


def to_jsonable(section: Any) -> dict[str, Any]:
    """A section as plain JSON data: the one serializer for model metadata and output provenance."""
    return TypeAdapter(type(section)).dump_python(section, mode="json")


def section_dict(params: Params, name: str) -> dict[str, Any]:
    return to_jsonable(getattr(params, name))
