"""Typed, validated parameters: params.yaml (plus optional overlays) -> one frozen `Params` object.

Every `medsr` command loads its parameters through `load_params`, which merges the given YAML
files in order, validates the result against `params.schema.yaml` (the same schema Snakemake
validates its config with), and builds frozen dataclasses. A stage receives only the sections
it declares in Snakemake and DVC.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from medsr.errors import MedsrError

SCHEMA_FILE = "params.schema.yaml"
CLASSES = ("healthy", "unhealthy")  # label index 0, 1; the positive class is "unhealthy"
NULL_CLASS = len(CLASSES)  # classifier-free guidance's "null" label index (Section 3.1.7)


@dataclasses.dataclass(frozen=True)
class SyntheticSource:
    train_per_class: int
    test_per_class: int
    seed: int


@dataclasses.dataclass(frozen=True)
class KaggleSource:
    dataset: str


@dataclasses.dataclass(frozen=True)
class UrlSource:
    url: str
    sha256: str


@dataclasses.dataclass(frozen=True)
class FolderSource:
    path: str


@dataclasses.dataclass(frozen=True)
class DataParams:
    source: Literal["synthetic", "kaggle", "url", "folder"]
    image_size: int
    resize: Literal["center_crop", "resize"]
    on_bad_image: Literal["fail", "skip"]
    synthetic: SyntheticSource
    kaggle: KaggleSource
    url: UrlSource
    folder: FolderSource
    class_map: dict[str, str]


@dataclasses.dataclass(frozen=True)
class DegradeParams:
    scale: int
    blur_sigma: float
    noise_std: float
    seed: int


@dataclasses.dataclass(frozen=True)
class UNetParams:
    base_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention_levels: tuple[int, ...]
    mid_attention: bool
    out_attention: bool
    attention_heads: int
    dropout: float
    norm_groups: int
    lr_injection: Literal["concat", "add"]


@dataclasses.dataclass(frozen=True)
class DiffusionParams:
    schedule: Literal["linear", "cosine"]
    timesteps: int
    beta_start: float
    beta_end: float
    cosine_s: float
    target: Literal["image", "residual"]


@dataclasses.dataclass(frozen=True)
class TrainSRParams:
    steps: int
    batch_size: int
    crop: int
    learning_rate: float
    ema_decay: float
    null_class_prob: float
    grad_clip: float
    hflip: bool
    checkpoint_every: int
    log_every: int
    seed: int


@dataclasses.dataclass(frozen=True)
class TrainRegressionParams:
    steps: int
    batch_size: int
    crop: int
    learning_rate: float
    seed: int


@dataclasses.dataclass(frozen=True)
class TrainClassifierParams:
    epochs: int
    batch_size: int
    learning_rate: float
    lr_schedule: Literal["cosine", "constant"]
    weight_decay: float
    val_fraction: float
    hflip: bool
    seed: int


@dataclasses.dataclass(frozen=True)
class GenerateParams:
    sampler: Literal["ancestral", "ddim", "dpmpp"]
    steps: int
    eta: float
    guidance: tuple[str, ...]
    guidance_scale: float
    batch_size: int
    shards: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ClassifyParams:
    batch_size: int


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    train_seeds: tuple[int, ...]
    sampling_seeds: tuple[int, ...]
    bootstrap: int
    bootstrap_seed: int
    confidence: float
    exact_below: int
    val_specificity: float
    sr_classifier: bool
    external: dict[str, str]
    figure_images: int
    lpips_weights: str


@dataclasses.dataclass(frozen=True)
class Params:
    data: DataParams
    degrade: DegradeParams
    sr_model: UNetParams
    diffusion: DiffusionParams
    train_sr: TrainSRParams
    train_regression: TrainRegressionParams
    train_classifier: TrainClassifierParams
    generate: GenerateParams
    classify: ClassifyParams
    evaluate: EvaluateParams


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


def schema() -> dict[str, Any]:
    return yaml.safe_load(resources.files("medsr").joinpath(SCHEMA_FILE).read_text())


def _key_path(parts: Sequence[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def validate(raw: Mapping[str, Any], source: str = "params") -> None:
    """Raise MedsrError naming the first offending key, e.g. `params.yaml: train_sr.steps: ...`."""
    import jsonschema

    validator = jsonschema.Draft7Validator(schema())
    errors = sorted(validator.iter_errors(raw), key=lambda e: (len(e.absolute_path), e.message))
    if not errors:
        return
    err = errors[0]
    where = _key_path(list(err.absolute_path))
    if err.validator == "additionalProperties":
        known = sorted(err.schema.get("properties", {}))
        unknown = sorted(set(err.instance) - set(known))
        name = f"{where}.{unknown[0]}" if err.absolute_path else unknown[0]
        raise MedsrError(f"{source}: {name}: unknown key (known keys here: {', '.join(known)})")
    if err.validator == "required":
        missing = err.message.split("'")[1]
        name = f"{where}.{missing}" if err.absolute_path else missing
        raise MedsrError(f"{source}: {name}: required key is missing")
    message = err.message
    if err.instance is None and "null" in str(err.schema):
        message += " (write the guidance mode in quotes: \"null\"; bare null is YAML's None)"
    raise MedsrError(f"{source}: {where}: {message}")


def _build(cls: type, raw: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        value = raw[field.name]
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            value = _build(hint, value)
        elif typing.get_origin(hint) is tuple:
            value = tuple(value)
        elif hint is float:
            value = float(value)
        elif typing.get_origin(hint) is dict:
            value = dict(value)
        values[field.name] = value
    return cls(**values)


def _check_consistency(params: Params, source: str) -> None:
    """Rules that a JSON schema cannot say."""
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
    if params.diffusion.beta_start >= params.diffusion.beta_end:
        raise MedsrError(f"{source}: diffusion.beta_start: must be below diffusion.beta_end")
    image_size, scale = params.data.image_size, params.degrade.scale
    if image_size % scale:
        raise MedsrError(f"{source}: degrade.scale: {scale} does not divide data.image_size {image_size}")
    for section in ("train_sr", "train_regression"):
        crop = getattr(params, section).crop
        if crop > image_size:
            raise MedsrError(f"{source}: {section}.crop: {crop} exceeds data.image_size {image_size}")
        if crop % (scale * 2 ** (levels - 1)):
            raise MedsrError(f"{source}: {section}.crop: {crop} must be a multiple of degrade.scale x "
                             f"2^(levels-1) = {scale * 2 ** (levels - 1)}")
    if image_size % 2 ** (levels - 1):
        raise MedsrError(f"{source}: data.image_size: {image_size} must be a multiple of 2^(levels-1) = "
                         f"{2 ** (levels - 1)} so the U-Net can halve it {levels - 1} times")
    bad_labels = sorted(set(params.data.class_map.values()) - set(CLASSES))
    if bad_labels:
        raise MedsrError(f"{source}: data.class_map: {bad_labels[0]} is not one of {', '.join(CLASSES)}")


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


def params_from_dict(raw: Mapping[str, Any], source: str = "params") -> Params:
    raw = yaml12_floats(raw)
    validate(raw, source)
    params = _build(Params, raw)
    _check_consistency(params, source)
    return params


def load_params(paths: Sequence[str | Path] = ("params.yaml",)) -> Params:
    """Merge the YAML files in order, validate, and return the typed parameters."""
    source = " + ".join(str(p) for p in paths)
    return params_from_dict(load_raw(paths), source)


def section_from_dict(cls: type, raw: Mapping[str, Any]) -> Any:
    """A section dataclass (e.g. `UNetParams`) from plain data, such as a model file's metadata."""
    try:
        return _build(cls, raw)
    except (KeyError, TypeError) as err:
        raise MedsrError(f"{cls.__name__}: incomplete or mistyped section ({err})") from err


def section_dict(params: Params, section: str) -> dict[str, Any]:
    """A section as plain data (for checkpoint metadata and output provenance)."""
    return dataclasses.asdict(getattr(params, section))
