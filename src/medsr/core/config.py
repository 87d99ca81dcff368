"""Reading and validating params.yaml (plus optional overlays) into one frozen `Params` object.

The sections themselves are declared once, in `medsr.core.parameters`. Everything else derives from those
declarations: `medsr` commands validate through `params_from_dict` (types per field, then the rules between keys
that a type cannot say), the JSON schema that Snakemake validates its config with is exported from them
(`workflow/schemas/params.schema.json`, `medsr schema`; tests/test_config.py proves the committed copy is current),
and model files store sections through `to_jsonable`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import TypeAdapter, ValidationError

from medsr.core.errors import MedsrError
from medsr.core.parameters import (
    DATA_DOMAINS,
    EVAL_SPLITS,
    GUIDE_ARCHITECTURE,
    SAMPLER_PROCESS,
    UNIQUE_LISTS,
    EvaluateParams,
    Params,
)


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
    schema["description"] = ("The schema of params.yaml, generated from medsr.core.config by `medsr schema`: "
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


def sampler_mismatch(sampler: str, process: str) -> str | None:
    """Why `sampler` cannot sample a model of diffusion process `process` (None: it can)."""
    if SAMPLER_PROCESS[sampler] == process:
        return None
    return (f"{sampler} cannot sample a diffusion.process {process} model (the {sampler} sampler goes with the "
            f"{SAMPLER_PROCESS[sampler]} process, and only with it)")


def _check_lists(params: Params, source: str) -> None:
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
    if classifier.min_epochs > classifier.epochs:
        raise MedsrError(f"{source}: train_classifier.min_epochs: {classifier.min_epochs} must be at most "
                         f"train_classifier.epochs {classifier.epochs}")
    shards = sorted(params.generate.shards)
    if shards != list(range(len(shards))):
        raise MedsrError(f"{source}: generate.shards: must be the ids 0..n-1, got {list(params.generate.shards)}")


def _check_unet(params: Params, source: str) -> None:
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


def _check_diffusion(params: Params, source: str) -> None:
    resshift = params.diffusion.resshift
    if resshift.eta_1 >= resshift.eta_T:
        raise MedsrError(f"{source}: diffusion.resshift.eta_1: must be below diffusion.resshift.eta_T")
    mismatch = sampler_mismatch(params.generate.sampler, params.diffusion.process)
    if mismatch:
        raise MedsrError(f"{source}: generate.sampler: {mismatch}")
    if params.train_student.teacher_steps > resshift.timesteps:
        raise MedsrError(f"{source}: train_student.teacher_steps: {params.train_student.teacher_steps} exceeds "
                         f"diffusion.resshift.timesteps {resshift.timesteps}")
    if params.diffusion.process == "resshift" and params.generate.steps > resshift.timesteps:
        raise MedsrError(f"{source}: generate.steps: {params.generate.steps} exceeds diffusion.resshift.timesteps "
                         f"{resshift.timesteps}")
    if params.diffusion.beta_start >= params.diffusion.beta_end:
        raise MedsrError(f"{source}: diffusion.beta_start: must be below diffusion.beta_end")


def _check_data(params: Params, source: str) -> None:
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


def _check_sizes(params: Params, source: str) -> None:
    """Image size, scale, crops and the U-Net's halvings fit one another."""
    levels = len(params.sr_model.channel_mult)
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


def _check_evaluate(params: Params, source: str) -> None:
    missing = [g for g in params.evaluate.sr_classifier if g not in params.generate.guidance]
    if missing:
        raise MedsrError(f"{source}: evaluate.sr_classifier: {missing[0]} is not one of generate.guidance "
                         f"{list(params.generate.guidance)}")
    bad_names = [n for n in params.evaluate.external if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", n)]
    if bad_names:
        raise MedsrError(f"{source}: evaluate.external.{bad_names[0]}: a set name is letters, digits, _ and -")
    _check_deployed(params, source)


def _check_deployed(params: Params, source: str) -> None:
    """evaluate.deployed's contract, before any file is read (medsr.classifier.deployed checks the file)."""
    d = params.evaluate.deployed
    if not d.file:
        return
    suffix = Path(d.file).suffix
    if suffix not in (".safetensors", ".pt2"):
        raise MedsrError(f"{source}: evaluate.deployed.file: {d.file} must end in .safetensors (weights of a "
                         f"torchvision architecture) or .pt2 (torch.export.save)")
    if (suffix == ".safetensors") != bool(d.architecture):
        raise MedsrError(f"{source}: evaluate.deployed.architecture: a torchvision architecture name for a "
                         f".safetensors file, \"\" for a .pt2 archive (got {d.architecture!r} for {d.file})")
    if d.channels not in (1, 3):
        raise MedsrError(f"{source}: evaluate.deployed.channels: {d.channels}: 1 or 3 (the grey image repeated)")
    for key in ("mean", "std"):
        if len(getattr(d, key)) not in (1, d.channels):
            raise MedsrError(f"{source}: evaluate.deployed.{key}: one value or one per channel ({d.channels})")
    if d.unhealthy_index >= d.outputs:
        raise MedsrError(f"{source}: evaluate.deployed.unhealthy_index: {d.unhealthy_index} is out of range for "
                         f"{d.outputs} output(s)")
    if d.image_size != params.data.image_size:
        raise MedsrError(f"{source}: evaluate.deployed.image_size: {d.image_size}, but the images are "
                         f"data.image_size = {params.data.image_size} (they are not resized silently)")


# the rules between keys that a per-field type cannot say, in the order they are checked
CONSISTENCY_RULES = (_check_lists, _check_unet, _check_diffusion, _check_data, _check_sizes, _check_evaluate)


def _check_consistency(params: Params, source: str) -> None:
    for rule in CONSISTENCY_RULES:
        rule(params, source)


def classifier_domains(evaluate: EvaluateParams) -> tuple[str, ...]:
    """The classifier domains of a run: DATA_DOMAINS always, and sr with evaluate.sr_classifier."""
    return DATA_DOMAINS + (("sr",) if evaluate.sr_classifier else ())


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
