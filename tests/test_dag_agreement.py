"""Snakemake and DVC run the same `medsr` commands over the same files with the same parameters."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dag import dvc_stages, snakemake_stages, tool_files
from project import ROOT, copy_workflow, set_params, sh, snakemake
GPU_RULES = {"train_sr", "train_student", "train_regression", "train_classifier", "finetune_classifier",
             "train_sr_classifier", "generate", "regress"}


OUTSIDE = "<outside>"  # in an evaluate.external path: a folder outside the project (absolute)
EXTERNAL_FILES = ("0001.png", "0002.png", "extra/0003.png")  # what project_copy writes into each external folder


def project_copy(tmp_path: Path, overrides: dict | None = None) -> Path:
    """The workflow with `overrides` in its params.yaml and dvc.yaml synced for them, as a user would
    (`medsr dvc-sync`: it writes the one-step student's stage for generate.sampler student and each
    evaluate.external folder as a dep of classify and evaluate). Each evaluate.external folder is made with
    EXTERNAL_FILES in it, OUTSIDE in its path standing for a folder beside the project."""
    from medsr.core.config import load_params
    from medsr.tools.dvc_yaml import sync_dvc_yaml

    project = copy_workflow(tmp_path / "project")
    if overrides:
        overrides = dict(overrides)
        if "evaluate.external" in overrides:
            overrides["evaluate.external"] = {name: path.replace(OUTSIDE, str(tmp_path / "outside"))
                                              for name, path in overrides["evaluate.external"].items()}
            for path in overrides["evaluate.external"].values():
                for name in EXTERNAL_FILES:
                    (project / path / name).parent.mkdir(parents=True, exist_ok=True)
                    (project / path / name).write_bytes(name.encode())
        if overrides.get("evaluate.deployed.file"):  # the user's classifier: any bytes will do for the plan
            (project / overrides["evaluate.deployed.file"]).parent.mkdir(parents=True, exist_ok=True)
            (project / overrides["evaluate.deployed.file"]).write_bytes(b"weights")
        set_params(project, overrides)
        dvc_yaml = project / "dvc.yaml"
        dvc_yaml.write_text(sync_dvc_yaml(dvc_yaml.read_text(), load_params([project / "params.yaml"]), project))
    return project


VARIANTS = {
    "default": None,
    "three shards, two guidance modes, one seed": {
        "generate.shards": [0, 1, 2],
        "generate.guidance": ["null", "predicted"],
        "evaluate.sampling_seeds": [7],
    },
    "a classifier on SR images, two train seeds": {
        "generate.guidance": ["null", "predicted"],
        "evaluate.sr_classifier": ["predicted"],
        "evaluate.train_seeds": [3, 4],
        "evaluate.sampling_seeds": [1, 2],
    },
    "two classifier families, one with an SR classifier": {
        "train_classifier.architectures": ["resnet18", "mobilenet_v3_small"],
        "evaluate.sr_classifier": ["null"],
        "evaluate.train_seeds": [0, 1, 2],
    },
    "the one-step student": {"generate.sampler": "student"},
    "external SR folders, relative and absolute": {
        "evaluate.external": {"mine": "external/mine", "theirs": f"{OUTSIDE}/theirs"},
    },
    "the user's own classifier and SR": {
        "evaluate.deployed.file": "models/user/mine.pt2",
        "evaluate.external": {"mine": "external/mine"},
    },
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_snakemake_and_dvc_declare_the_same_dag(tmp_path, variant):
    work = project_copy(tmp_path, VARIANTS[variant])
    snake = snakemake_stages(work)
    dvc = dvc_stages(work)

    assert sorted(snake) == sorted(dvc), "stage names differ"
    for name in sorted(dvc):
        s, d = snake[name], dvc[name]
        assert s.cmd == d.cmd, f"{name}: commands differ\n snakemake: {s.cmd}\n dvc:       {d.cmd}"
        assert s.inputs == d.inputs, f"{name}: inputs differ: {sorted(s.inputs ^ d.inputs)}"
        assert s.outputs == d.outputs, f"{name}: outputs differ: {sorted(s.outputs ^ d.outputs)}"
        assert s.params == d.params, f"{name}: params differ: {sorted(s.params ^ d.params)}"


def test_matrix_expands_with_params(tmp_path):
    work = project_copy(tmp_path, VARIANTS["three shards, two guidance modes, one seed"])
    names = sorted(n for n in dvc_stages(work) if n.startswith("generate@"))
    assert names == sorted(f"generate@{g}-7-{k}" for g in ("null", "predicted") for k in range(3))


def test_sr_classifier_trains_on_the_sr_train_images_of_its_mode(tmp_path):
    work = project_copy(tmp_path, VARIANTS["a classifier on SR images, two train seeds"])
    stages = dvc_stages(work)
    trained = {n for n in stages if n.startswith("train_sr_classifier@")}
    assert trained == {"train_sr_classifier@resnet18-predicted-3", "train_sr_classifier@resnet18-predicted-4"}
    assert "results/sr/eval/predicted/seed1" in stages["train_sr_classifier@resnet18-predicted-3"].inputs
    assert {n for n in stages if n.startswith("classify")} == {"classify@3", "classify@4"}  # one per train seed
    classify = stages["classify@3"]
    assert "models/classifiers/classifier_resnet18_sr-predicted_seed4.safetensors" in classify.inputs
    assert "--seed 3" in classify.cmd and "results/predictions/seed3.csv" in classify.outputs
    merge = stages["merge_predictions"]
    assert merge.inputs >= {"results/predictions/seed3.csv", "results/predictions/seed4.csv"}
    assert merge.outputs == {"results/predictions.csv"}
    assert not {n for n in dvc_stages(project_copy(tmp_path / "default")) if n.startswith("train_sr_classifier")}


def test_the_student_is_trained_and_sampled_only_for_a_distilled_sampler(tmp_path):
    """generate.sampler student: both front ends train the one-step student from train_sr's model and generate
    samples it; with the default sampler neither trains one and generate samples train_sr's model."""
    for variant, trained in (("default", False), ("the one-step student", True)):
        work = project_copy(tmp_path / variant.replace(" ", "-"), VARIANTS[variant])
        model = "models/student.safetensors" if trained else "models/sr.safetensors"
        for front, stages in (("snakemake", snakemake_stages(work)), ("dvc", dvc_stages(work))):
            assert ("train_student" in stages) == trained, f"{variant}, {front}"
            generate = [s for n, s in stages.items() if n.startswith("generate@")]
            assert generate and all(model in s.inputs and f"--model {model}" in s.cmd for s in generate), front
            if trained:
                student = stages["train_student"]
                assert "models/sr.safetensors" in student.inputs and model in student.outputs, front
                assert "--teacher models/sr.safetensors" in student.cmd, front


def test_dvc_sync_adds_and_removes_the_student_stage(tmp_path):
    """`medsr dvc-sync` for generate.sampler student, then back for resshift, gives the committed dvc.yaml again."""
    work = project_copy(tmp_path, VARIANTS["the one-step student"])
    assert "train_student:" in (work / "dvc.yaml").read_text()
    set_params(work, {"generate.sampler": "resshift"})
    sh(["medsr", "dvc-sync"], cwd=work)
    assert (work / "dvc.yaml").read_text() == (ROOT / "dvc.yaml").read_text()


def test_dvc_sync_adds_and_removes_the_deployed_classifiers_stage(tmp_path):
    """With evaluate.deployed.file set, dvc.yaml gains classify_deployed (the file, every image set and each external
    folder as deps) and evaluate reads its predictions; set back to "", it is the committed dvc.yaml byte for byte."""
    from medsr.stages import DEPLOYED_PREDICTIONS

    work = project_copy(tmp_path, VARIANTS["the user's own classifier and SR"])
    stages = yaml.safe_load((work / "dvc.yaml").read_text())["stages"]
    deployed = stages["classify_deployed"]
    assert deployed["deps"][:5] == ["models/user/mine.pt2", "data/hr", "data/bicubic", "results/regression",
                                    "results/sr/eval"] and "external/mine" in deployed["deps"]
    assert deployed["outs"] == [DEPLOYED_PREDICTIONS]
    assert f"--deployed {DEPLOYED_PREDICTIONS}" in stages["evaluate"]["cmd"]
    assert DEPLOYED_PREDICTIONS in stages["evaluate"]["deps"]
    set_params(work, {"evaluate.deployed.file": "", "evaluate.external": {}})
    sh(["medsr", "dvc-sync"], cwd=work)
    assert (work / "dvc.yaml").read_text() == (ROOT / "dvc.yaml").read_text()


def test_each_external_folder_is_an_input_of_classify_and_evaluate_only_by_its_files(tmp_path):
    """Both front ends: every file in each evaluate.external folder, relative or absolute as params.yaml names it, is
    an input of every classify job and of evaluate, and of no other stage (DVC: the folder, hashed by content)."""
    work = project_copy(tmp_path, VARIANTS["external SR folders, relative and absolute"])
    expected = {f"external/mine/{name}" for name in EXTERNAL_FILES} | {
        f"{tmp_path}/outside/theirs/{name}" for name in EXTERNAL_FILES}
    for front, stages in (("snakemake", snakemake_stages(work)), ("dvc", dvc_stages(work))):
        readers = {name for name, stage in stages.items() if stage.inputs & expected}
        assert readers == {n for n in stages if n.startswith("classify@")} | {"evaluate"}, f"{front}: {sorted(readers)}"
        assert len(readers) == 6, front  # a classify job per train seed of params.yaml (5), and evaluate
        for name in readers:
            assert stages[name].inputs >= expected, f"{front} {name}: {sorted(expected - stages[name].inputs)}"


def test_dvc_sync_writes_each_external_folder_as_a_dep_and_removes_it_again(tmp_path):
    """`medsr dvc-sync` with evaluate.external set: dvc.yaml is the committed one plus one dep line per folder, the
    path as given (relative, absolute), in classify and evaluate only, their commands unchanged; syncing again
    changes nothing, and with evaluate.external back to {} it is the committed dvc.yaml byte for byte."""
    from medsr.tools.dvc_yaml import USER_DEP

    work = project_copy(tmp_path, VARIANTS["external SR folders, relative and absolute"])
    text = (work / "dvc.yaml").read_text()
    committed = (ROOT / "dvc.yaml").read_text()
    user_lines = [line for line in text.splitlines() if USER_DEP in line]
    assert user_lines == 2 * ['      - "external/mine"  # user: evaluate.external.mine',
                              f'      - "{tmp_path}/outside/theirs"  # user: evaluate.external.theirs']
    assert "".join(line for line in text.splitlines(keepends=True) if USER_DEP not in line) == committed
    stages = yaml.safe_load(text)["stages"]
    for name in ("classify", "evaluate"):
        deps = stages[name]["deps"]
        assert "external/mine" in deps and f"{tmp_path}/outside/theirs" in deps, name
        assert deps.index("external/mine") < min(i for i, d in enumerate(deps) if d.startswith("src/")), name
    sh(["medsr", "dvc-sync"], cwd=work)
    assert (work / "dvc.yaml").read_text() == text
    set_params(work, {"evaluate.external": {}})
    sh(["medsr", "dvc-sync"], cwd=work)
    assert (work / "dvc.yaml").read_text() == committed


def test_a_missing_external_folder_is_a_one_line_error_naming_its_key(tmp_path):
    """A relative and an absolute evaluate.external folder that does not exist: `medsr dvc-sync` exits non-zero with
    one line naming the key and leaves dvc.yaml as it was; Snakemake stops at parse time with the same message."""
    work = project_copy(tmp_path)
    for folder in ("nowhere/mine", str(tmp_path / "nowhere")):
        set_params(work, {"evaluate.external": {"mine": folder}})
        result = sh(["medsr", "dvc-sync"], cwd=work, check=False)
        message = f"{folder}: evaluate.external.mine: folder is missing"
        assert result.returncode != 0 and result.stderr.strip() == f"medsr dvc-sync: error: {message}", result.stderr
        assert (work / "dvc.yaml").read_text() == (ROOT / "dvc.yaml").read_text()
        result = snakemake("--dry-run", "--cores", "1", cwd=work, check=False)
        assert result.returncode != 0 and f"medsr: {message}" in result.stdout + result.stderr, result.stderr
    (work / "a_file").write_text("not a folder")
    set_params(work, {"evaluate.external": {"mine": "a_file"}})
    result = sh(["medsr", "dvc-sync"], cwd=work, check=False)
    assert result.stderr.strip() == "medsr dvc-sync: error: a_file: evaluate.external.mine: not a folder"


def test_every_architecture_trains_every_domain_and_seed_and_the_guide_stays_resnet18(tmp_path):
    work = project_copy(tmp_path, VARIANTS["two classifier families, one with an SR classifier"])
    stages = dvc_stages(work)
    trained = {n for n in stages if n.startswith(("train_classifier@", "finetune_classifier@"))}
    assert trained == {
        f"{rule}@{a}-{d}-{s}"
        for a in ("resnet18", "mobilenet_v3_small")
        for rule, d in (("train_classifier", "hr"), ("finetune_classifier", "bicubic"))
        for s in (0, 1, 2)
    }
    assert {n for n in stages if n.startswith("train_sr_classifier@")} == {
        f"train_sr_classifier@{a}-null-{s}" for a in ("resnet18", "mobilenet_v3_small") for s in (0, 1, 2)}
    assert "--architecture mobilenet_v3_small" in stages["train_classifier@mobilenet_v3_small-hr-1"].cmd
    assert "models/classifiers/classifier_mobilenet_v3_small_sr-null_seed2.safetensors" in stages["classify@1"].inputs
    guides = {f for n, s in stages.items() if n.startswith("generate@") for f in s.inputs if "classifiers" in f}
    assert guides == {"models/classifiers/classifier_resnet18_bicubic_seed0.safetensors"}


def test_every_classifier_of_another_domain_fine_tunes_the_hr_classifier_of_its_family_and_seed(tmp_path):
    stages = snakemake_stages(project_copy(tmp_path, VARIANTS["two classifier families, one with an SR classifier"]))
    tuned = {n: s for n, s in stages.items() if n.startswith(("finetune_classifier@", "train_sr_classifier@"))}
    assert len(tuned) == 2 * 2 * 3
    for name, stage in tuned.items():
        arch, seed = name.split("@")[1].split("-")[0], name.rsplit("-", 1)[1]
        hr = f"models/classifiers/classifier_{arch}_hr_seed{seed}.safetensors"
        assert hr in stage.inputs and f"--init {hr}" in stage.cmd, name
    for name, stage in stages.items():
        if name.startswith("train_classifier@"):
            assert "--init" not in stage.cmd and "_hr_seed" in stage.cmd, name


def test_training_and_generation_rules_request_a_gpu(tmp_path):
    """GPU rules declare gpu=1 (SLURM, or one GPU job at a time) and their GPU memory estimate (several share a GPU
    under --resources gpu_mem_mb=...); no other rule declares either."""
    stages = snakemake_stages(project_copy(tmp_path))
    for name, stage in stages.items():
        rule = name.split("@")[0]
        assert stage.gpu == (1 if rule in GPU_RULES else 0), f"{name}: resources gpu={stage.gpu}"
        assert (stage.gpu_mem_mb > 0) == (rule in GPU_RULES), f"{name}: resources gpu_mem_mb={stage.gpu_mem_mb}"
        assert stage.gpu_mem_mb <= 120_000, name  # each fits the documented one-H200 budget alone


def test_every_command_is_a_medsr_stage_reading_the_params_file(tmp_path):
    for stage in dvc_stages(project_copy(tmp_path)).values():
        assert stage.cmd.startswith("medsr "), stage.cmd
        assert "--params params.yaml" in stage.cmd, stage.cmd


def test_snakemake_lint_has_no_errors():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--cores", "1"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dvc_yaml_commands_and_source_files_are_written_from_the_stage_table():
    """dvc.yaml's `cmd:` lines and `src/` deps are what `medsr dvc-sync` writes from the stage table and the
    import graph (Snakemake renders / computes them)."""
    from medsr.core.config import load_params
    from medsr.tools.dvc_yaml import sync_dvc_yaml

    text = (ROOT / "dvc.yaml").read_text()
    assert sync_dvc_yaml(text, load_params([ROOT / "params.yaml"])) == text, \
        "dvc.yaml's commands or source dependencies are stale: run `medsr dvc-sync`"


def _job_keys(rule: str, job_name: str) -> dict[str, str]:
    """A job's wildcards / matrix values by name: the fields of its rule's log, in the order both front ends name
    the job by (`generate@null-0-1`: guidance, seed, shard)."""
    from medsr.stages import LOGS

    fields = re.findall(r"\{(\w+)\}", LOGS[rule])
    return dict(zip(fields, job_name.split("@")[1].split("-"))) if fields else {}


def _read_command(cmd: str) -> tuple[str, dict[str, str]]:
    """`medsr <command> --a x --b y` -> (command, {a: x, b: y}), the flags in the order given."""
    words = shlex.split(cmd)
    assert words[0] == "medsr" and len(words) % 2 == 0, cmd
    return words[1], {flag.removeprefix("--"): value for flag, value in zip(words[2::2], words[3::2])}


@pytest.mark.parametrize("variant", ["default", "a classifier on SR images, two train seeds", "the one-step student",
                                     "external SR folders, relative and absolute"])
def test_every_job_runs_the_stage_tables_command_on_its_own_inputs_and_outputs(tmp_path, variant):
    """Each job's command in either front end is the stage table's (`medsr.stages.command`: the flags, their order,
    the options from the job's wildcards, the fixed paths, its log), each path an input of the job (or the folder
    holding its inputs) or an output of it, as the table says."""
    from medsr.stages import BY_RULE, LOGS, RULE_OPTIONS, command

    work = project_copy(tmp_path, VARIANTS[variant])
    for front, jobs in (("snakemake", snakemake_stages(work)), ("dvc", dvc_stages(work))):
        for name, job in jobs.items():
            rule = name.split("@")[0]
            stage, keys = BY_RULE[rule], _job_keys(rule, name)
            subcommand, flags = _read_command(job.cmd)
            assert subcommand == stage.command, f"{front} {name}: {job.cmd}"
            for arg in stage.paths:
                value = flags.get(arg.name)
                if arg.fixed is not None:
                    assert value == arg.fixed, f"{front} {name}: --{arg.name} {value}"
                elif arg.out:
                    assert value in job.outputs, f"{front} {name}: --{arg.name} {value} is not an output"
                elif value is not None or arg.required:
                    assert any(f == value or f.startswith(f"{value}/") for f in job.inputs), \
                        f"{front} {name}: --{arg.name} {value} is not an input"
            values = {a.name: flags[a.name] for a in stage.paths if a.name in flags}
            values |= {o.name: keys[o.wildcard] for o in stage.options if o.wildcard in keys}
            assert set(RULE_OPTIONS.get(rule, {})) | {o.name for o in stage.options if o.wildcard in keys} == {
                o.name for o in stage.options}, f"{name}: an option neither fixed nor a wildcard"
            expected = command(rule, values, "--params params.yaml", LOGS[rule].format(**keys))
            assert job.cmd == expected, f"{front} {name}: the command is not the stage table's\n {job.cmd}\n {expected}"


def test_each_stage_depends_on_exactly_the_modules_its_command_imports(tmp_path):
    from medsr.stages import STAGES
    from medsr.tools.sources import import_closure, source_files

    dvc = dvc_stages(project_copy(tmp_path))
    for stage in STAGES:
        expected = set(source_files(stage.command))
        assert f"src/medsr/{stage.module.replace('.', '/')}.py" in expected
        for name, declared in dvc.items():
            if name.split("@")[0] == stage.rule:
                assert {f for f in declared.inputs if f.startswith("src/")} == expected, name
    # the graph itself: pixel operations are imported by what resamples images, not by evaluation
    assert "medsr.data.pixels" in import_closure("medsr.stages.degrade")
    assert "medsr.data.pixels" in import_closure("medsr.stages.generate")
    assert "medsr.data.pixels" not in import_closure("medsr.stages.evaluate")
    assert "src/medsr/core/io.py" in source_files("evaluate") and "src/medsr/core/io.py" in source_files("download")


def test_no_tool_is_a_source_file_of_a_stage():
    """The tools (`medsr.cli.TOOLS`: dvc-sync, overlay-args, readme, schema) run outside the DAG: their modules,
    and what only they import (`tool_files`), are sources of no stage (editing the dvc.yaml writer reruns nothing),
    while a stage still depends on the CLI's dispatch path and its own module's imports."""
    from medsr.stages import STAGES
    from medsr.tools.sources import source_files

    tools = tool_files()
    assert {"src/medsr/tools/dvc_yaml.py", "src/medsr/tools/overlay.py", "src/medsr/report/readme.py",
            "src/medsr/report/benchmark_tables.py"} <= tools
    for stage in STAGES:
        sources = set(source_files(stage.command))
        assert not sources & tools, f"{stage.command}: tool modules among its sources: {sorted(sources & tools)}"
        assert {"src/medsr/cli.py", "src/medsr/stages/__init__.py", "src/medsr/core/config.py"} <= sources, \
            stage.command
