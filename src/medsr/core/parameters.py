"""Every section of params.yaml, declared once as a pydantic dataclass: its fields, types, ranges and enums, and
the constants and enums the sections are made of (classes, splits, samplers, guidance modes, architectures).

Reading, validating and exporting them is `medsr.core.config`'s job: `load_params` / `params_from_dict` return one
frozen `Params`, the JSON schema Snakemake validates with is derived from these declarations (`medsr schema`), and model
files store sections through `config.to_jsonable`. A stage receives only the sections it declares in the stage
table (`medsr.stages`). Each knob is described once, by its comment in params.yaml: a section here holds only its
fields' types, ranges and enums (tests/test_config.py checks that no field carries a comment of its own).
"""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

CLASSES = ("healthy", "unhealthy")  # label index 0, 1; the positive class is "unhealthy"
NULL_CLASS = len(CLASSES)  # classifier-free guidance's "null" label index (Section 3.1.7)
SPLITS = ("train", "val", "test")  # val is carved from train once, at download; test is read by classify/evaluate only
EVAL_SPLITS = ("val", "test")  # what generate/regress super-resolve and classify classifies: val for operating points

SAMPLER_SOURCE = Path(__file__).parents[1] / "diffusion" / "samplers.py"
VERDICT_TEST_SOURCE = Path(__file__).parents[1] / "evaluation" / "verdicts.py"


def _literal_attributes(node: ast.ClassDef) -> dict[str, object]:
    """The class attributes a class body assigns a literal to (`name = "ddim"`, `distilled: ClassVar[bool] = True`)."""
    found = {}
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign):
            targets = [stmt.target]
        elif isinstance(stmt, ast.Assign):
            targets = stmt.targets
        else:
            continue
        if len(targets) == 1 and isinstance(targets[0], ast.Name) and isinstance(stmt.value, ast.Constant):
            found[targets[0].id] = stmt.value.value
    return found


def class_declarations(source: Path, kind: str) -> dict[str, dict[str, object]]:
    """Each class's literal class attributes (its bases' included) by the `name` it declares, in the order of the
    file, for a family of classes registered by their definition (`kind`: what they are, for the error). A base
    class without a `name` is no member. Read from the source, not imported, so that validating params.yaml (every
    stage does) does not put the family's code among every stage's source files (`medsr.tools.sources.source_files`
    follows imports)."""
    classes: dict[str, dict[str, object]] = {}
    members: dict[str, dict[str, object]] = {}
    for node in ast.parse(source.read_text(), str(source)).body:
        if not isinstance(node, ast.ClassDef):
            continue
        inherited = [classes.get(base.id, {}) for base in node.bases if isinstance(base, ast.Name)]
        own = _literal_attributes(node)
        classes[node.name] = {key: value for base in reversed(inherited) for key, value in base.items()} | own
        if "name" in own:
            if own["name"] in members:
                raise ValueError(f"{source}: two {kind} classes are named {own['name']!r}")
            members[own["name"]] = classes[node.name]
    return members


def sampler_declarations(source: Path = SAMPLER_SOURCE) -> dict[str, dict[str, object]]:
    """The sampler classes of `medsr.diffusion.samplers` (a sampler is declared once, by its class)."""
    return class_declarations(source, "sampler")


def verdict_test_declarations(source: Path = VERDICT_TEST_SOURCE) -> dict[str, dict[str, object]]:
    """The verdict test classes of `medsr.evaluation.verdicts` (a verdict test is declared once, by its class)."""
    return class_declarations(source, "verdict test")


# --- enums: each declared once --------------------------------------------------------------
Source = Literal["mni", "synthetic", "kaggle", "url", "folder", "nifti", "dicom"]
VOLUME_SOURCES = ("nifti", "dicom")  # sources of 3-D volumes: slices are cut per subject, splits drawn by subject
SliceAxis = Literal["sagittal", "coronal", "axial"]  # the RAS axes 0, 1, 2 after reorientation to canonical
DegradeModel = Literal["gaussian", "kspace"]  # Eq. 1.1 | k-space truncation + complex noise (magnitude: Rician)
KspaceWindow = Literal["none", "hamming", "tukey"]
# oracle hands the generator the true label, swapped its opposite (the class-swap audit): both flagged everywhere
Guidance = Literal["null", "predicted", "oracle", "swapped"]
# each sampler's name and the diffusion.process whose models it samples, read off the sampler classes themselves
_DECLARED_SAMPLERS = sampler_declarations()
SAMPLER_PROCESS: dict[str, str] = {name: declared["diffusion_process"]
                                   for name, declared in sorted(_DECLARED_SAMPLERS.items())}
SamplerName = Literal[tuple(SAMPLER_PROCESS)]
# the samplers of a distilled one-step student's model file (train-student's), not of train-sr's diffusion model:
# with one of them the DAG trains the student and generate samples it (medsr.stages.generate_model)
DISTILLED_SAMPLERS = frozenset(name for name, declared in _DECLARED_SAMPLERS.items() if declared["distilled"])
# the FNR tests a verdict can rest on, read off the verdict test classes themselves, in their order there
VERDICT_RULES: tuple[str, ...] = tuple(verdict_test_declarations())
VerdictRule = Literal[VERDICT_RULES]
DiffusionProcess = Literal["ddpm", "resshift"]  # noise -> HR (Ho et al. 2020) | bicubic -> HR (Yue et al. 2023)
ClassifierDomain = Literal["hr", "bicubic", "sr"]  # the kind of images a classifier is trained on
# torchvision classifier families (weights=None, 1-channel stem, 2-class head): verdicts are reported per architecture
Architecture = Literal["resnet18", "efficientnet_b0", "densenet121", "mobilenet_v3_small", "shufflenet_v2_x1_0"]
GUIDANCE_MODES: tuple[str, ...] = typing.get_args(Guidance)
LEAKING_GUIDANCE: tuple[str, ...] = ("oracle", "swapped")  # modes computed from the true label: never a fair arm
GUIDED_BY_CLASSIFIER = "predicted"  # the mode that reads generate's guide classifier (on the bicubic images)
SAMPLERS: tuple[str, ...] = typing.get_args(SamplerName)
# the val criterion a classifier's early stopping and kept epoch follow, and whether higher is better
# (medsr.classifier.stopping)
MONITOR_HIGHER_IS_BETTER: dict[str, bool] = {"val_loss": False, "val_auroc": True}
Monitor = Literal[tuple(MONITOR_HIGHER_IS_BETTER)]
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
    lesion_radius: Annotated[float, Field(strict=True, gt=0.5, le=16)]
    lesion_radius_jitter: Annotated[float, Field(strict=True, ge=0, lt=0.5)]
    rim_width: Annotated[float, Field(strict=True, gt=0)]
    lesion_count: Annotated[tuple[Annotated[int, Field(strict=True, ge=0)], ...], Field(min_length=2, max_length=2)]
    lesion_contrast: Annotated[float, Field(strict=True, gt=0, le=1)]


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
    path: Str
    subjects_csv: Str
    axis: SliceAxis
    slice_range: Annotated[tuple[Probability, Probability], Field(min_length=2, max_length=2)]
    min_brain_fraction: Probability
    slices_per_subject: PositiveInt
    percentiles: Annotated[tuple[Annotated[float, Field(strict=True, ge=0, le=100)], ...],
                           Field(min_length=2, max_length=2)]
    test_fraction: Annotated[float, Field(strict=True, gt=0, lt=0.9)]


@section
class DataParams:
    source: Source
    image_size: Annotated[int, Field(strict=True, ge=16, le=1024)]
    resize: Literal["center_crop", "resize"]
    on_bad_image: Literal["fail", "skip"]
    val_fraction: Annotated[float, Field(strict=True, gt=0, lt=0.9)]
    split_seed: Seed
    mni: MniSource
    synthetic: SyntheticSource
    kaggle: KaggleSource
    url: UrlSource
    folder: FolderSource
    volumes: VolumeSource
    duplicates: Literal["fail", "drop"]
    near_duplicate_bits: Annotated[int, Field(strict=True, ge=-1, le=64)]
    near_duplicate_correlation: Annotated[float, Field(strict=True, ge=0, le=1)]
    class_map: Annotated[dict[str, Literal["healthy", "unhealthy"]], Field(min_length=2)]


@section
class DegradeParams:
    scale: Annotated[int, Field(strict=True, ge=2, le=8)]
    blur_sigma: Annotated[float, Field(strict=True, ge=0)]
    noise_std: Annotated[float, Field(strict=True, ge=0, le=0.5)]
    seed: Seed
    model: DegradeModel = "gaussian"
    kspace_window: KspaceWindow = "none"


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

    timesteps: Annotated[int, Field(strict=True, ge=1, le=1000)]
    kappa: Annotated[float, Field(strict=True, gt=0)]
    p: Annotated[float, Field(strict=True, gt=0)]
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
    teacher_steps: PositiveInt
    inverse_weight: Annotated[float, Field(strict=True, ge=0)]
    gt_weight: Annotated[float, Field(strict=True, ge=0)]
    ema_decay: Annotated[float, Field(strict=True, ge=0, lt=1)]
    null_class_prob: Probability
    grad_clip: Annotated[float, Field(strict=True, ge=0)]
    hflip: Bool
    val_images: Annotated[int, Field(strict=True, ge=2)]
    eval_every: PositiveInt
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
    architectures: Annotated[tuple[Architecture, ...], Field(min_length=1)]
    epochs: PositiveInt
    batch_size: PositiveInt
    learning_rate: LearningRate
    lr_schedule: Literal["cosine", "constant"]
    weight_decay: Annotated[float, Field(strict=True, ge=0)]
    hflip: Bool
    crop: Annotated[int, Field(strict=True, ge=0)]
    precise_bn: Bool
    patience: Annotated[int, Field(strict=True, ge=0)]
    min_epochs: Annotated[int, Field(strict=True, ge=0)]
    monitor: Monitor


@section
class GenerateParams:
    sampler: SamplerName
    steps: PositiveInt
    eta: Probability
    guidance: Annotated[tuple[Guidance, ...], Field(min_length=1)]
    guidance_scale: Annotated[float, Field(strict=True, ge=0)]
    batch_size: PositiveInt
    shards: Annotated[tuple[Seed, ...], Field(min_length=1)]
    samples_per_image: PositiveInt
    sample_eta: Annotated[float, Field(strict=True, gt=0, le=1)]
    posterior_images: Annotated[int, Field(strict=True, ge=0)]
    precision: Precision


@section
class ClassifyParams:
    batch_size: PositiveInt


@section
class DeployedParams:
    """A user's own trained classifier and the contract it needs (medsr.classifier.deployed); file "": none."""
    file: Str
    architecture: Str
    image_size: PositiveInt
    channels: Annotated[int, Field(strict=True, ge=1, le=3)]
    mean: Annotated[tuple[Float, ...], Field(min_length=1, max_length=3)]
    std: Annotated[tuple[Annotated[float, Field(strict=True, gt=0)], ...], Field(min_length=1, max_length=3)]
    outputs: PositiveInt
    unhealthy_index: Annotated[int, Field(strict=True, ge=0)]


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
    equivalence_margin: Annotated[float, Field(strict=True, gt=0, lt=1)]
    sr_classifier: Annotated[tuple[Guidance, ...], Field(max_length=1)]
    external: dict[str, Annotated[str, Field(strict=True, min_length=1)]]
    deployed: DeployedParams
    figure_images: Annotated[int, Field(strict=True, ge=1, le=16)]
    lpips_weights: Str
    rcps_alpha: Annotated[float, Field(strict=True, gt=0, lt=1)]
    rcps_delta: Annotated[float, Field(strict=True, gt=0, lt=1)]
    error_threshold: Annotated[float, Field(strict=True, gt=0, lt=1)]
    crc_alpha: Annotated[float, Field(strict=True, gt=0, lt=1)]
    gate_min_hr_val_auroc: Probability
    gate_require_converged: Bool
    gate_chance_alpha: Annotated[float, Field(strict=True, ge=0, lt=1)]
    # own images above chance at this one-sided level (0: not checked)


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
