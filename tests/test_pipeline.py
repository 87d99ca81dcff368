"""End to end: `dvc repro` and `snakemake` run the whole DAG on configs/smoke.yaml, rerun only what a
parameter change touches, share one set of files, and a reviewer's clone pulls the cached results.

Each front end runs in its own scratch git repository holding a copy of the workflow files; the
`medsr` commands are the installed package of this checkout.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medsr.stages import BY_RULE, source_files
from project import copy_workflow, dvc, run_together, set_params, sh, snakemake
from volume_data import dicom_dataset, nifti_dataset

pytestmark = pytest.mark.pipeline

ALL_STAGES = {"download", "degrade", "train_sr", "train_regression", "train_classifier@resnet18-hr-0",
              "finetune_classifier@resnet18-bicubic-0", "generate@null-0-0", "generate@null-0-1", "gather@null-0",
              "generate@predicted-0-0", "generate@predicted-0-1", "gather@predicted-0",
              "regress", "classify", "evaluate"}


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def descendants(project: Path, stage: str) -> set[str]:
    """Stages downstream of `stage` in DVC's graph (edges point from a stage to what it needs)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        graph = repo.index.graph
        node = next(s for s in graph if s.name == stage)
        return {s.name for s in nx.ancestors(graph, node)}


def snakemake_planned(project: Path) -> set[str]:
    """Rules a dry run would execute (the Job stats table), without the `all` target."""
    out = snakemake("--dry-run", "--cores", "1", cwd=project).stdout
    if "Nothing to be done" in out:
        return set()
    table = out.split("Job stats:")[1].split("total")[0]
    return {line.split()[0] for line in table.splitlines()[3:] if line.strip()} - {"all"}


def assert_subject_level_run(project: Path, degradation: str) -> None:
    """A run on 10 volume subjects: no subject in two splits, the cluster bootstrap, the degradation asked for."""
    from medsr import io

    records = io.read_manifest(project / "data/hr")
    splits_of: dict[str, set[str]] = {}
    for r in records:
        splits_of.setdefault(r.subject, set()).add(r.split)
    assert len(splits_of) == 10 and all(len(s) == 1 for s in splits_of.values())  # no subject in two splits
    assert {r.split for r in records} == {"train", "val", "test"}
    results = json.loads((project / "results/evaluation.json").read_text())
    assert results["settings"]["bootstrap_unit"] == "subject (cluster bootstrap)"
    assert json.loads((project / "data/lr/metadata.json").read_text())["model"] == degradation


# --- DVC --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def both_runs(tmp_path_factory):
    """`dvc repro` and `snakemake` (the README's command) each run the whole smoke DAG in its own scratch
    repository, at the same time (most of a smoke stage is importing torch: one core each)."""
    projects = {}
    for front_end in ("dvc", "snakemake"):
        where = tmp_path_factory.mktemp(front_end)
        projects[front_end] = copy_workflow(where / "project", "configs/smoke.yaml", git=True,
                                            remote=where / "remote")
    # both runs read real scan formats end to end: volumes cut into slices with subject-level splits through to
    # the cluster bootstrap; Snakemake reads NIfTI with the k-space degradation, DVC a DICOM series per subject
    # and both diffusion processes: Snakemake the default (resshift), DVC the thesis's DDPM sampled with DDIM
    for front_end, source, make, degradation, process, sampler in (
            ("snakemake", "nifti", nifti_dataset, "kspace", "resshift", "resshift"),
            ("dvc", "dicom", dicom_dataset, "gaussian", "ddpm", "ddim")):
        volumes = projects[front_end].parent / "volumes"
        make(volumes, per_class=5)
        set_params(projects[front_end], {"data.source": source, "data.volumes.path": str(volumes),
                                         "data.volumes.slices_per_subject": 3, "data.volumes.min_brain_fraction": 0.1,
                                         "degrade.model": degradation, "diffusion.process": process,
                                         "generate.sampler": sampler})
        sh(["git", "commit", "-qam", f"{source} volumes"], projects[front_end])
    repro, _ = run_together([([sys.executable, "-m", "dvc", "repro"], projects["dvc"]),
                             ([sys.executable, "-m", "snakemake", "--cores", "2", "--max-threads", "1"],
                              projects["snakemake"])])
    sh(["git", "add", "-A"], projects["dvc"])
    sh(["git", "commit", "-qm", "first run"], projects["dvc"])
    return projects, ran_stages(repro.stdout)


@pytest.fixture(scope="module")
def dvc_project(both_runs):
    projects, ran = both_runs
    return projects["dvc"], ran


def test_dvc_repro_runs_the_whole_dag(dvc_project):
    """On DICOM series (see both_runs): subject-level splits all the way to a cluster bootstrap."""
    project, ran = dvc_project
    assert ran == ALL_STAGES
    assert_subject_level_run(project, "gaussian")
    metrics = json.loads((project / "results/metrics.json").read_text())
    assert metrics  # its content is checked in tests/test_evaluate.py
    assert (project / "models/sr.safetensors").is_file()
    assert dvc("status", cwd=project).stdout.strip().startswith("Data and pipelines are up to date")


@pytest.mark.parametrize("key, value, stage", [
    ("evaluate.bootstrap", 120, "evaluate"),
    ("classify.batch_size", 5, "classify"),
    ("train_regression.steps", 3, "train_regression"),
])
def test_dvc_reruns_only_the_changed_stage_and_its_descendants(dvc_project, key, value, stage):
    """`dvc status` lists exactly the stage whose params changed; `dvc repro` reruns what status lists and
    their descendants (the rerun itself is exercised by test_dvc_metrics_diff_and_plots_show)."""
    project, _ = dvc_project
    set_params(project, {key: value})
    try:
        changed = set(json.loads(dvc("status", "--json", cwd=project).stdout))
        assert changed == {stage}, f"{key} should touch only {stage}, dvc status says {changed}"
        assert stage == "evaluate" or "evaluate" in descendants(project, stage)
    finally:
        sh(["git", "checkout", "params.yaml"], project)
    assert dvc("status", cwd=project).stdout.strip().startswith("Data and pipelines are up to date")


IMPORTERS = {  # from the import graph: the stages whose command runs the module (medsr.stages.source_files)
    "src/medsr/io.py": None,  # every stage
    "src/medsr/pixels.py": {"degrade", "train_sr", "train_regression", "train_classifier", "finetune_classifier",
                            "generate", "regress"},
}
DEFAULT_RULES = set(BY_RULE) - {"train_sr_classifier"}  # the default DAG trains no classifier on SR images


@pytest.mark.parametrize("module", list(IMPORTERS))
def test_editing_a_module_reruns_every_stage_that_imports_it(dvc_project, snakemake_project, module):
    importers = {rule for rule in DEFAULT_RULES if module in source_files(BY_RULE[rule].command)}
    assert importers == (IMPORTERS[module] or DEFAULT_RULES), "the import graph changed: update IMPORTERS"
    for project, front_end in ((dvc_project[0], "dvc"), (snakemake_project, "snakemake")):
        path = project / module
        original, stat = path.read_text(), path.stat()
        path.write_text(original + "\n# an edit\n")
        try:
            if front_end == "dvc":  # a stage whose own dependency changed; descendants follow on repro
                planned = {name.split("@")[0] for name in json.loads(dvc("status", "--json", cwd=project).stdout)}
                assert planned == importers, f"dvc status: {sorted(planned ^ importers)}"
            else:
                assert snakemake_planned(project) >= importers
        finally:
            path.write_text(original)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as before: Snakemake compares mtimes


EXP_SHOW = [
    "exp",
    "show",
    "--no-pager",
    "--only-changed",
    "--drop",
    r"^(auroc|acc|psnr|ssim|p|crc_fnr|crc_spec|trust)\.",
]


def test_dvc_exp_run_metrics_diff_plots_and_exp_show_in_200_columns(dvc_project):
    r"""An experiment on an evaluate-only parameter (the cheapest rerun) that moves the headline numbers: the
    operating point at val specificity 0.01 calls almost every image unhealthy. `dvc metrics diff` and
    `dvc plots show` see it, and the README's comparison,
    `dvc exp show --only-changed --drop '^(auroc|acc|psnr|ssim|p|crc_fnr|crc_spec|trust)\.'`, shows one row per
    experiment with the changed parameter and every FNR that moved, whole in a 200-column terminal."""
    project, _ = dvc_project
    before = json.loads((project / "results/metrics.json").read_text())["fnr"]
    try:
        ran = ran_stages(dvc("exp", "run", "-S", "evaluate.val_specificity=0.01", cwd=project).stdout)
        assert ran == {"evaluate"}, ran
        diff = json.loads(dvc("metrics", "diff", "--json", cwd=project).stdout)
        assert diff.get("results/metrics.json"), "dvc metrics diff shows no change after a params change"
        shown = dvc("plots", "show", "--out", "dvc_plots", cwd=project)
        assert (project / "dvc_plots/index.html").is_file(), shown.stdout
        after = json.loads((project / "results/metrics.json").read_text())["fnr"]
        changed = {key for key in before if before[key] != after[key]}
        assert changed, f"no FNR moved: {before} -> {after}"
        env_columns = {"COLUMNS": "200"}
        shown = sh([sys.executable, "-m", "dvc", *EXP_SHOW], project, env=env_columns).stdout
        lines = [line for line in shown.splitlines() if line.strip()]
        assert all(len(line) <= 200 for line in lines), shown
        assert "…" not in shown, f"columns truncated:\n{shown}"
        header = next(line for line in lines if "Experiment" in line)
        assert "evaluate.val_specificity" in header, shown
        assert all(f"fnr.{key}" in header for key in changed), shown  # --only-changed keeps every FNR that moved
        rows = [line for line in lines if line.strip().startswith(("workspace", "main", "├", "└"))]
        assert len(rows) >= 2, shown  # the workspace (the experiment applied) and the baseline commit
    finally:
        sh(["git", "checkout", "params.yaml", "dvc.lock"], project)
        dvc("checkout", "-q", cwd=project, check=False)
        dvc("exp", "remove", "--all-commits", cwd=project, check=False)


def test_reviewer_clones_pulls_and_has_nothing_to_reproduce(dvc_project, tmp_path):
    project, _ = dvc_project
    assert dvc("status", cwd=project).stdout.strip().startswith("Data and pipelines are up to date")
    dvc("push", cwd=project)
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "results/metrics.json").exists()
    dvc("pull", cwd=clone)
    repro = dvc("repro", cwd=clone)
    assert ran_stages(repro.stdout) == set(), repro.stdout
    assert (clone / "results/metrics.json").read_bytes() == (project / "results/metrics.json").read_bytes()


def test_thesis_overlay_as_dvc_overrides_plans_every_stage(dvc_project):
    """`medsr overlay-args configs/thesis.yaml` gives `-S` overrides that DVC accepts and that plan the
    thesis DAG. DVC 3.67's dry runs (`dvc exp run --dry`, `dvc repro --dry`) stop at the first dependency
    that an earlier, not yet run stage would write (treeverse/dvc#9021), so the plan is read from
    `dvc status` after DVC's own `apply_overrides` (what `exp run -S` calls) has changed params.yaml."""
    from dvc.utils.hydra import apply_overrides

    project, _ = dvc_project
    args = sh([sys.executable, "-m", "medsr.cli", "overlay-args", "configs/thesis.yaml"], project).stdout.split()
    assert "data.source='kaggle'" in args and args[::2] == ["-S"] * (len(args) // 2)
    before = (project / "results/metrics.json").read_bytes()
    try:
        apply_overrides(project / "params.yaml", args[1::2])
        medsr_params = sh([sys.executable, "-c", "from medsr.config import load_params; "
                           "p = load_params(['params.yaml']); print(p.data.source, p.sr_model.channel_mult)"],
                          project).stdout
        assert medsr_params.split()[0] == "kaggle"  # the overlay, through DVC's syntax, is valid medsr params
        planned = set(json.loads(dvc("status", "--json", cwd=project).stdout))
        assert {"download", "degrade", "train_sr", "classify", "evaluate"} <= planned
        generate = {s for s in planned if s.startswith("generate@")}
        assert len(generate) == 2 * 3 * 8 and "generate@predicted-2-7" in generate  # guidance x seeds x shards
        trained = {s for s in planned if s.startswith(("train_classifier@", "finetune_classifier@"))}
        assert trained == {f"{rule}@{a}-{d}-{k}" for a in ("resnet18", "densenet121") for k in range(3)
                           for rule, d in (("train_classifier", "hr"), ("finetune_classifier", "bicubic"))}
        assert (project / "results/metrics.json").read_bytes() == before  # planned, nothing run
    finally:
        sh(["git", "checkout", "params.yaml", "dvc.lock"], project)
    assert dvc("status", cwd=project).stdout.strip().startswith("Data and pipelines are up to date")


# --- Snakemake --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def snakemake_project(both_runs):
    return both_runs[0]["snakemake"]


def test_snakemake_runs_the_whole_dag(snakemake_project):
    """On NIfTI volumes (see both_runs): subject-level splits all the way to a cluster bootstrap."""
    assert (snakemake_project / "results/metrics.json").is_file()
    assert snakemake_planned(snakemake_project) == set()
    assert_subject_level_run(snakemake_project, "kspace")


def test_snakemake_reruns_the_rules_that_use_a_changed_param(snakemake_project):
    set_params(snakemake_project, {"classify.batch_size": 7})
    try:
        assert snakemake_planned(snakemake_project) == {"classify", "evaluate"}
        set_params(snakemake_project, {"train_regression.learning_rate": 0.001})
        assert snakemake_planned(snakemake_project) == {"train_regression", "regress", "classify", "evaluate"}
    finally:
        sh(["git", "checkout", "params.yaml"], snakemake_project)
    assert snakemake_planned(snakemake_project) == set()


def test_dvc_commit_records_a_snakemake_run(snakemake_project):
    dvc("commit", "--force", cwd=snakemake_project)
    status = dvc("status", cwd=snakemake_project).stdout
    assert status.strip().startswith("Data and pipelines are up to date"), status
    assert ran_stages(dvc("repro", cwd=snakemake_project).stdout) == set()


def test_snakemake_report_holds_this_runs_figures_and_findings(snakemake_project):
    snakemake("--report", "results/report.html", cwd=snakemake_project)
    html = (snakemake_project / "results/report.html").read_text(errors="replace")
    figures = sorted((snakemake_project / "results/figures").glob("*.png"))
    assert {f.name for f in figures} >= {"fnr_forest.png", "examples.png", "difference_maps.png",
                                         "confusion_matrices.png", "mcnemar_tables.png", "training_curves.png",
                                         "fnr_intervals.png"}
    for figure in figures:  # embedded byte for byte: the report shows the current run's figures
        assert base64.b64encode(figure.read_bytes()).decode() in html, figure.name
    summary = (snakemake_project / "results/figures/summary.rst").read_text()
    first_finding = next(line for line in summary.splitlines() if line.startswith("- "))  # the first verdict
    assert first_finding[2:] in html  # the generated summary is in the report's description
    assert "Confusion matrix of each image set + classifier" in html  # per-figure captions


def test_report_renders_in_headless_chromium(snakemake_project, tmp_path):
    """The report opens in a browser: a headless Chromium screenshot that is not blank.
    Needs Debian's chromium (`.ci/run` installs it); without it the test says so and is skipped."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium); .ci/run installs it")
    report = snakemake_project / "results/report.html"
    if not report.is_file():
        snakemake("--report", "results/report.html", cwd=snakemake_project)
    shot = tmp_path / "report.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
                    "--virtual-time-budget=15000", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, timeout=120, check=True)
    from PIL import Image
    import numpy as np

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (1600, 1200)
    assert pixels.std() > 20  # text, navigation and the DAG drawn, not an empty page
    dark = (pixels < 100).mean()
    assert 0.005 < dark < 0.6, dark
