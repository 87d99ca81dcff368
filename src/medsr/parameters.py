"""Every section of params.yaml, declared once as a pydantic dataclass: its fields, types, ranges and enums, and
the constants and enums the sections are made of (classes, splits, samplers, guidance modes, architectures).

Reading, validating and exporting them is `medsr.config`'s job: `load_params` / `params_from_dict` return one frozen
`Params`, the JSON schema Snakemake validates with is derived from these declarations (`medsr schema`), and model
files store sections through `config.to_jsonable`. A stage receives only the sections it declares in the stage
table (`medsr.stages`).
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

SAMPLER_SOURCE = Path(__file__).parent / "diffusion" / "samplers.py"
VERDICT_TEST_SOURCE = Path(__file__).parent / "evaluation" / "verdicts.py"


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
    stage does) does not put the family's code among every stage's source files (`medsr.stages.source_files` follows
    imports)."""
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
# the val criterion a classifier's early stopping and kept epoch follow, and whether higher is better (medsr.stopping)
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
    # training-only augmentation: a random crop x crop window of every train image (0, or a side >= the images':
    # whole images); precise BN, val and every evaluation read whole images
    crop: Annotated[int, Field(strict=True, ge=0)]
    precise_bn: Bool  # BatchNorm statistics recomputed on the train split before every val pass (precise BN)
    patience: Annotated[int, Field(strict=True, ge=0)]  # early stopping: epochs without a better `monitor` value
    # before training stops (0: off, every one of `epochs` is trained)
    min_epochs: Annotated[int, Field(strict=True, ge=0)]  # no early stop before this many epochs (a flat start)
    monitor: Monitor  # the val criterion of early stopping and of the kept epoch (medsr.stopping)


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
class DeployedParams:
    """A user's own trained classifier and the contract it needs (medsr.classifier.deployed); file "": none."""
    file: Str  # .safetensors (weights of a torchvision `architecture`) or .pt2 (torch.export.save)
    architecture: Str  # torchvision.models name, for .safetensors; "" for .pt2
    image_size: PositiveInt  # input height and width; the images must have it (never resized silently)
    channels: Annotated[int, Field(strict=True, ge=1, le=3)]  # 1, or 3: the grey image repeated
    mean: Annotated[tuple[Float, ...], Field(min_length=1, max_length=3)]  # (x - mean) / std of [0, 1] images
    std: Annotated[tuple[Annotated[float, Field(strict=True, gt=0)], ...], Field(min_length=1, max_length=3)]
    outputs: PositiveInt  # number of outputs; scores: softmax over them (one output: its sigmoid)
    unhealthy_index: Annotated[int, Field(strict=True, ge=0)]  # which output is the unhealthy class


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
    # |FNR difference| within which a verdict may say "equivalent" (two one-sided tests), declared before any run
    equivalence_margin: Annotated[float, Field(strict=True, gt=0, lt=1)]
    # guidance mode of the SR train images a classifier is also trained on (Q2 for SR): [] none, or one mode
    sr_classifier: Annotated[tuple[Guidance, ...], Field(max_length=1)]
    external: dict[str, Annotated[str, Field(strict=True, min_length=1)]]
    deployed: DeployedParams  # Q1 with the user's own classifier (off while file is "")
    figure_images: Annotated[int, Field(strict=True, ge=1, le=16)]
    lpips_weights: Str
    rcps_alpha: Annotated[float, Field(strict=True, gt=0, lt=1)]  # RCPS: tolerated share of pixels outside interval
    rcps_delta: Annotated[float, Field(strict=True, gt=0, lt=1)]  # RCPS: allowed chance that the bound fails
    error_threshold: Annotated[float, Field(strict=True, gt=0, lt=1)]  # |SR - HR| above which a pixel is "wrong"
    crc_alpha: Annotated[float, Field(strict=True, gt=0, lt=1)]  # conformal risk control: expected FNR bound
    # the learning gate, checked before any verdict (medsr.evaluation.gate): below the floor, or unconverged, the
    # run gives no verdict
    gate_min_hr_val_auroc: Probability  # floor of the HR-trained classifier's AUROC on HR val, every seed and family
    gate_require_converged: Bool  # every classifier's val criterion must have stopped improving within its epochs
    gate_chance_alpha: Annotated[float, Field(strict=True, ge=0, lt=1)]  # every classifier's kept val AUROC on its
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
