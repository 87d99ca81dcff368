"""The thesis overlay and the SLURM profile plan the jobs we expect, without running them."""

from __future__ import annotations

import re

import yaml

from project import ROOT, copy_workflow, snakemake


def planned_jobs(output: str) -> list[dict[str, str]]:
    """Jobs of a Snakemake dry run: rule name, resources and shell command."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        match = re.match(r"(?:local)?rule (\w+):", block)
        if not match:
            continue
        resources = re.search(r"resources: (.*)", block)
        command = re.search(r"Shell command: (.*)", block)
        jobs.append({
            "rule": match.group(1),
            "resources": dict(kv.split("=", 1) for kv in resources.group(1).split(", ")) if resources else {},
            "cmd": command.group(1) if command and command.group(1) != "None" else "",  # `all` has none
        })
    return jobs


def test_slurm_profile_plans_gpu_jobs_and_one_job_per_shard(tmp_path):
    project = copy_workflow(tmp_path / "project")
    out = snakemake("--profile", "workflow/profiles/slurm", "--dry-run", "--configfile",
                    "configs/thesis.yaml", cwd=project).stdout
    jobs = planned_jobs(out)
    thesis = yaml.safe_load((ROOT / "configs/thesis.yaml").read_text())
    generate = [j for j in jobs if j["rule"] == "generate"]
    expected = (
        len(thesis["generate"]["guidance"])
        * len(thesis["evaluate"]["sampling_seeds"])
        * len(thesis["generate"]["shards"])
    )
    assert len(generate) == expected
    for job in jobs:
        gpu = job["resources"].get("gpu")
        if job["rule"] in {"train_sr", "train_regression", "train_classifier", "finetune_classifier",
                           "train_sr_classifier", "generate", "regress"}:
            assert gpu == "1", job
            assert int(job["resources"]["gpu_mem_mb"]) > 0, job  # local sharing; SLURM gives each its own GPU
            assert job["resources"]["slurm_partition"] == "gpu", job
        else:
            assert gpu is None and "gpu_mem_mb" not in job["resources"], job
    assert {j["rule"] for j in jobs} >= {"download", "train_sr", "generate", "gather", "classify", "evaluate"}


def test_one_gpu_shared_by_memory_plans_the_same_jobs_as_the_cpu_command(tmp_path):
    """`--resources gpu_mem_mb=...` (several GPU jobs on one GPU) plans the same jobs as the CPU default command."""
    project = copy_workflow(tmp_path / "project")
    cpu = planned_jobs(snakemake("--dry-run", "--printshellcmds", "--cores", "2", "--max-threads", "1",
                                 cwd=project).stdout)
    gpu = planned_jobs(snakemake("--dry-run", "--printshellcmds", "--cores", "16", "--max-threads", "2",
                                 "--resources", "gpu_mem_mb=120000", cwd=project).stdout)
    assert sorted(j["cmd"] for j in gpu) == sorted(j["cmd"] for j in cpu) and len(cpu) > 10
    assert {j["rule"] for j in gpu if "gpu_mem_mb" in j["resources"]} >= {"train_sr", "generate", "train_classifier"}


def test_thesis_overlay_is_passed_to_every_command(tmp_path):
    project = copy_workflow(tmp_path / "project")
    out = snakemake("--dry-run", "--printshellcmds", "--cores", "1", "--configfile", "configs/thesis.yaml",
                    cwd=project).stdout
    commands = [j["cmd"] for j in planned_jobs(out) if j["cmd"]]
    assert commands and all("--params params.yaml --params configs/thesis.yaml" in c for c in commands)


def test_snakemake_config_overrides_are_refused(tmp_path):
    project = copy_workflow(tmp_path / "project")
    result = snakemake("--dry-run", "--cores", "1", "--config", "foo=1", cwd=project, check=False)
    assert result.returncode != 0
    assert "--configfile" in result.stdout + result.stderr


def test_bad_params_stop_snakemake_with_the_key(tmp_path):
    project = copy_workflow(tmp_path / "project")
    text = (project / "params.yaml").read_text().replace("batch_size: 16", "batch_size: sixteen", 1)
    (project / "params.yaml").write_text(text)
    result = snakemake("--dry-run", "--cores", "1", cwd=project, check=False)
    assert result.returncode != 0
    assert "batch_size" in result.stdout + result.stderr


def test_gpu_overlay_validates_and_plans_ten_seeds_of_two_families(tmp_path):
    """configs/gpu.yaml: the default data with >= 10 classifier seeds of ResNet18 and DenseNet121, on one GPU."""
    from medsr.core.config import load_params

    params = load_params([ROOT / "params.yaml", ROOT / "configs/gpu.yaml"])
    default = load_params([ROOT / "params.yaml"])
    assert params.data == default.data and params.sr_model == default.sr_model
    assert len(params.evaluate.train_seeds) >= 10
    assert params.train_classifier.architectures == ("resnet18", "densenet121")
    project = copy_workflow(tmp_path / "project")
    out = snakemake("--dry-run", "--printshellcmds", "--cores", "16", "--max-threads", "2", "--resources",
                    "gpu_mem_mb=120000", "--configfile", "configs/gpu.yaml", cwd=project).stdout
    trained = {(re.search(r"--architecture (\w+)", j["cmd"]).group(1), re.search(r"--seed (\d+)", j["cmd"]).group(1))
               for j in planned_jobs(out) if j["rule"] == "train_classifier"}
    assert trained == {(arch, str(seed)) for arch in ("resnet18", "densenet121") for seed in range(10)}
