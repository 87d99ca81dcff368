"""params.yaml is the single, validated source of parameters; mistakes name the key."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest
import yaml

from medsr.core import config, parameters
from medsr.core.config import deep_merge, json_schema, load_params, params_from_dict, schema_text
from medsr.core.parameters import Params
from medsr.core.errors import MedsrError
from project import ROOT


def raw_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_params_yaml_and_every_overlay_are_valid():
    assert isinstance(load_params([ROOT / "params.yaml"]), Params)
    for overlay in sorted((ROOT / "configs").glob("*.yaml")):
        load_params([ROOT / "params.yaml", overlay])


def test_the_committed_schema_is_the_one_the_dataclasses_export():
    """Snakemake validates with workflow/schemas/params.schema.json: regenerate it with `medsr schema`."""
    committed = (ROOT / "workflow/schemas/params.schema.json").read_text()
    assert committed == schema_text(), "workflow/schemas/params.schema.json is stale: run `medsr schema`"


def test_the_exported_schema_accepts_params_and_refuses_what_the_loader_refuses():
    import jsonschema
    validator = jsonschema.Draft202012Validator(json_schema())
    raw = raw_params()
    assert not list(validator.iter_errors(raw))
    for change in ({"train_sr": {"stepz": 3}}, {"train_sr": {"steps": "many"}}, {"degrade": {"scale": 1}},
                   {"generate": {"sampler": "euler"}}, {"evaluate": {"train_seeds": []}}):
        assert list(validator.iter_errors(deep_merge(raw, change))), change


def test_enums_are_declared_once_and_reused():
    from medsr.stages import generate
    from medsr import stages
    from medsr.diffusion import samplers
    assert samplers.SAMPLERS is parameters.SAMPLERS
    assert stages.BY_COMMAND["generate"].options[0].choices == parameters.GUIDANCE_MODES
    assert stages.BY_COMMAND["train-classifier"].options[0].choices == parameters.ARCHITECTURES
    assert (
        parameters.GUIDANCE_MODES == typing.get_args(parameters.Guidance) == ("null", "predicted", "oracle", "swapped")
    )
    assert not hasattr(generate, "GUIDANCE")


def test_every_params_yaml_key_is_a_typed_field():
    raw = raw_params()
    params = load_params([ROOT / "params.yaml"])
    assert set(raw) == {f.name for f in dataclasses.fields(Params)}
    for name, section in raw.items():
        fields = {f.name for f in dataclasses.fields(getattr(params, name))}
        assert set(section) == fields, name


def test_sections_serialise_to_json_and_back():
    params = load_params([ROOT / "params.yaml"])
    for name in parameters.SECTIONS:
        data = config.to_jsonable(getattr(params, name))
        json.dumps(data)
        assert config.section_from_dict(type(getattr(params, name)), data) == getattr(params, name)


@pytest.mark.parametrize("change, message", [
    ({"train_sr": {"stepz": 3}}, "train_sr.stepz: unknown key"),
    ({"train_sr": {"steps": "many"}}, "train_sr.steps: Input should be a valid integer, got 'many'"),
    ({"train_sr": {"steps": "16"}}, "train_sr.steps: Input should be a valid integer, got '16'"),
    ({"train_sr": {"hflip": "yes"}}, "train_sr.hflip"),
    ({"evaluate": {"train_seeds": [0, 0]}}, "evaluate.train_seeds: lists a value twice"),
    ({"train_classifier": {"architectures": ["vgg11"]}}, "train_classifier.architectures[0]"),
    ({"train_classifier": {"architectures": ["resnet18", "resnet18"]}}, "train_classifier.architectures: lists a "
                                                                         "value twice"),
    ({"train_classifier": {"architectures": ["shufflenet_v2_x1_0"]}}, "train_classifier.architectures: must start "
                                                                       "with resnet18"),
    ({"evaluate": {"external": {"my sr": "x"}}}, "evaluate.external.my sr"),
    ({"degrade": {"scale": 1}}, "degrade.scale"),
    ({"generate": {"guidance": [None]}}, "generate.guidance[0]"),
    ({"generate": {"shards": [0, 2]}}, "generate.shards"),
    ({"sr_model": {"attention_levels": [7]}}, "sr_model.attention_levels"),
    ({"data": {"source": "ftp"}}, "data.source"),
    ({"data": {"mni": {"lesion_count": [9, 5]}}}, "data.mni.lesion_count"),
    ({"data": {"mni": {"rim_width": 2.5}}}, "data.mni.rim_width"),
    ({"data": {"mni": {"lesion_radius": 0.2}}}, "data.mni.lesion_radius"),
    ({"nonsense": 1}, "nonsense: unknown key"),
])
def test_bad_params_name_the_key_on_one_line(change, message):
    with pytest.raises(MedsrError) as err:
        params_from_dict(deep_merge(raw_params(), change), "params.yaml")
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("params.yaml: ")


def test_missing_key_is_named():
    raw = raw_params()
    del raw["train_sr"]["seed"]
    with pytest.raises(MedsrError, match=r"train_sr\.seed: required key is missing"):
        params_from_dict(raw)


def test_overlays_merge_in_order(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("train_sr:\n  steps: 10\n")
    second.write_text("train_sr:\n  steps: 20\n  batch_size: 3\n")
    params = load_params([ROOT / "params.yaml", first, second])
    assert (params.train_sr.steps, params.train_sr.batch_size) == (20, 3)
    assert params.train_sr.crop == raw_params()["train_sr"]["crop"]


def test_unreadable_params_file_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train_sr: [unclosed\n")
    with pytest.raises(MedsrError, match="bad.yaml: not valid YAML"):
        load_params([bad])
    with pytest.raises(MedsrError, match="missing.yaml: cannot read"):
        load_params([tmp_path / "missing.yaml"])


def test_exponent_floats_written_by_dvc_are_numbers(tmp_path):
    """`dvc exp run -S train_sr.learning_rate=1e-5` writes `1e-05` (YAML 1.2), a string to PyYAML."""
    text = (ROOT / "params.yaml").read_text().replace("learning_rate: 0.0003      # Adam", "learning_rate: 1e-05")
    assert "learning_rate: 1e-05" in text
    (tmp_path / "params.yaml").write_text(text)
    params = load_params([tmp_path / "params.yaml"])
    assert params.train_sr.learning_rate == 1e-05


SCRATCH_VERDICT_TEST = '''

class ScratchSign(VerdictTest):
    name = "scratch_sign"
    description = "scratch"
    summary = "scratch"
'''


def test_a_verdict_test_class_is_a_valid_verdict_rule_by_its_definition(tmp_path):
    """evaluate.verdict_rule's enum (and the schema's) is read off medsr/evaluation/verdicts.py: in a copy of the
    package where a class is appended to that file and nothing else changes, its name validates, is in the schema
    and in the registry; the installed package refuses it with one line naming the key."""
    import shutil
    import subprocess
    import sys

    package = tmp_path / "medsr"
    shutil.copytree(ROOT / "src" / "medsr", package, ignore=shutil.ignore_patterns("__pycache__"))
    verdicts = package / "evaluation" / "verdicts.py"
    verdicts.write_text(verdicts.read_text() + SCRATCH_VERDICT_TEST)
    script = (
        "import json, sys\n"
        "from medsr.core.config import deep_merge, json_schema, load_raw, params_from_dict\n"
        "from medsr.evaluation.verdicts import VERDICT_TESTS\n"
        "raw = deep_merge(load_raw([sys.argv[1]]), {'evaluate': {'verdict_rule': 'scratch_sign'}})\n"
        "params = params_from_dict(raw, 'params.yaml')\n"
        "enum = json_schema()['$defs']['EvaluateParams']['properties']['verdict_rule']['enum']\n"
        "print(json.dumps([params.evaluate.verdict_rule, enum, VERDICT_TESTS['scratch_sign'].__name__]))\n")
    done = subprocess.run([sys.executable, "-c", script, str(ROOT / "params.yaml")], capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path), "PATH": ""}, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    rule, enum, cls = json.loads(done.stdout.splitlines()[-1])
    assert rule == "scratch_sign" and cls == "ScratchSign"
    assert enum == [*parameters.VERDICT_RULES, "scratch_sign"]
    with pytest.raises(MedsrError, match=r"evaluate\.verdict_rule") as error:
        params_from_dict(deep_merge(raw_params(), {"evaluate": {"verdict_rule": "scratch_sign"}}), "params.yaml")
    assert "\n" not in str(error.value)


def test_each_knob_is_described_once_in_params_yaml():
    """A params.yaml key's description is its comment there; the section dataclasses declare types and ranges only,
    so the two cannot drift apart. Every dataclass field the comments dropped has one in params.yaml."""
    import ast
    import re

    source = (ROOT / "src/medsr/core/parameters.py").read_text()
    lines = source.splitlines()
    sections = [node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)
                and any(getattr(d, "id", None) == "section" for d in node.decorator_list)]
    assert len(sections) > 10
    commented = [f"{cls.name}: {lines[i].strip()}" for cls in sections for i in range(cls.lineno, cls.end_lineno)
                 if "#" in lines[i]]
    assert not commented, commented
    params_yaml = (ROOT / "params.yaml").read_text()
    for key in ("val_fraction", "lesion_radius", "patience", "monitor", "gate_chance_alpha", "unhealthy_index"):
        assert re.search(rf"^\s+{key}: .*#", params_yaml, re.M), key
