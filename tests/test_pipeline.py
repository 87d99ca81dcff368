"""End to end: `dvc repro` and `snakemake` run the whole DAG on configs/smoke.yaml, rerun only what a
parameter change touches, share one set of files, and a reviewer's clone pulls the cached results.

Each front end runs in its own scratch git repository holding a copy of the workflow files; the
`medsr` commands are the installed package of this checkout.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from medsr.stages import BY_RULE
from medsr.tools.sources import source_files
from dag import tool_files
from project import copy_workflow, dvc, run_together, set_params, sh, snakemake
from slurm_cluster import Cluster, site_profile, snakemake_on
from volume_data import dicom_dataset, nifti_dataset

pytestmark = pytest.mark.pipeline

ALL_STAGES = {"download", "degrade", "train_sr", "train_regression", "train_classifier@resnet18-hr-0",
              "finetune_classifier@resnet18-bicubic-0", "generate@null-0-0", "generate@null-0-1", "gather@null-0",
              "generate@predicted-0-0", "generate@predicted-0-1", "gather@predicted-0",
              "regress", "classify@0", "merge_predictions", "evaluate"}


LOCAL_RULES = ("gather", "merge_predictions")  # the Snakefile's localrules (besides all): never submitted


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
    from medsr.core import io

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
def both_runs(tmp_path_factory, slurm):
    """`dvc repro` and `snakemake` (the README's command) each run the whole smoke DAG in its own scratch
    repository, at the same time (most of a smoke stage is importing torch: one core each). Where the
    one-node SLURM cluster runs, a clone of the Snakemake repository runs the same DAG through the SLURM
    profile meanwhile (its jobs mostly wait for the plugin's status checks); the third item is that run's
    process (None without a cluster), which test_slurm_runs_the_dag_like_the_local_run reads."""
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
    on_slurm = start_slurm_run(projects["snakemake"], slurm) if isinstance(slurm, Cluster) else None
    try:
        repro, _ = run_together([([sys.executable, "-m", "dvc", "repro"], projects["dvc"]),
                                 ([sys.executable, "-m", "snakemake", "--cores", "2", "--max-threads", "1"],
                                  projects["snakemake"])])
        sh(["git", "add", "-A"], projects["dvc"])
        sh(["git", "commit", "-qm", "first run"], projects["dvc"])
        yield projects, ran_stages(repro.stdout), on_slurm
    finally:
        if on_slurm is not None and on_slurm.poll() is None:
            on_slurm.kill()
            on_slurm.communicate()


@pytest.fixture(scope="module")
def dvc_project(both_runs):
    projects, ran, _ = both_runs
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


def test_snakemake_touch_records_a_dvc_run(dvc_project):
    """The documented handoff the other way (docs/pipeline.md): after `dvc repro`, `snakemake --touch --forceall`
    records every job's parameters, code and input checksums without running one. Then neither front end has
    anything to do (DVC ignores the .snakemake_timestamp files Snakemake leaves in folder outputs, .dvcignore), and
    Snakemake reruns what a changed parameter touches, which it could not tell without that record."""
    project, _ = dvc_project
    before = {name: data for name, (_, data) in output_stamps(project).items()}
    snakemake("--touch", "--forceall", "--cores", "1", cwd=project)
    after = output_stamps(project)
    assert {name: data for name, (_, data) in after.items() if name in before} == before  # touched, not rewritten
    assert {Path(name).name for name in set(after) - set(before)} == {".snakemake_timestamp"}
    status = dvc("status", cwd=project).stdout
    assert status.strip().startswith("Data and pipelines are up to date"), status
    assert snakemake_planned(project) == set()
    set_params(project, {"classify.batch_size": 7})
    try:
        assert snakemake_planned(project) == {"classify", "merge_predictions", "evaluate"}
    finally:
        sh(["git", "checkout", "params.yaml"], project)


@pytest.mark.parametrize("key, value, stage", [
    ("evaluate.bootstrap", 120, "evaluate"),
    ("classify.batch_size", 5, "classify@0"),
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


IMPORTERS = {  # from the import graph: the stages whose command runs the module (medsr.tools.sources.source_files)
    "src/medsr/core/io.py": None,  # every stage
    "src/medsr/data/pixels.py": {"degrade", "train_sr", "train_regression", "train_classifier", "finetune_classifier",
                            "generate", "regress"},
}
# the default DAG trains no classifier on SR images (evaluate.sr_classifier: []) and no one-step student (a distilled
# generate.sampler only), and runs no deployed classifier (evaluate.deployed.file: "")
DEFAULT_RULES = set(BY_RULE) - {"train_sr_classifier", "train_student", "classify_deployed"}


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


def test_editing_a_tool_reruns_nothing(both_runs, tmp_path):
    """The tools (`medsr.cli.TOOLS`: the dvc.yaml writer, the README writer, the overlay tool) are no stage's
    dependency: in a copy of each finished project (its files, their mtimes, Snakemake's records, DVC's cache), a
    comment line appended to each tool module (`tool_files`) leaves `snakemake -n` with nothing to do and `dvc status`
    up to date."""
    projects, _, _ = both_runs
    tools = tool_files()
    assert {"src/medsr/tools/dvc_yaml.py", "src/medsr/tools/overlay.py", "src/medsr/report/readme.py",
            "src/medsr/tools/snakemake_rules.py", "src/medsr/tools/__init__.py"} <= tools
    for front_end, project in projects.items():
        copy = tmp_path / front_end
        shutil.copytree(project, copy, symlinks=True)
        for name in sorted(tools):
            with (copy / name).open("a") as module:
                module.write("# an edit\n")
        if front_end == "dvc":
            status = dvc("status", cwd=copy).stdout
            assert status.strip().startswith("Data and pipelines are up to date"), status
        else:
            assert snakemake_planned(copy) == set()


EXP_SHOW = [
    "exp",
    "show",
    "--no-pager",
    "--only-changed",
    "--drop",
    r"^(auroc|acc|psnr|ssim|p|spec|crc_fnr|crc_spec|trust)\.",
]


def test_dvc_exp_run_metrics_diff_plots_and_exp_show_in_200_columns(dvc_project):
    r"""An experiment on an evaluate-only parameter (the cheapest rerun) that moves the headline numbers: the
    operating point at val specificity 0.01 calls almost every image unhealthy. `dvc metrics diff` and
    `dvc plots show` see it, and the README's comparison,
    `dvc exp show --only-changed --drop '^(auroc|acc|psnr|ssim|p|spec|crc_fnr|crc_spec|trust)\.'`, shows one row per
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


def dvc_over_ssh(server, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """`dvc ARGS` with the SSH server's client HOME, whose ~/.ssh/known_hosts trusts its host key."""
    return sh([sys.executable, "-m", "dvc", *args], cwd, check, env={"HOME": str(server.home)})


def add_ssh_remote(project: Path, server, storage: Path, key: Path, name: str = "reviewers") -> None:
    """The remote and its key in .dvc/config.local (never committed), as a reviewer sets up their own access."""
    dvc("remote", "add", "--local", "-f", name, server.url(storage), cwd=project)
    dvc("remote", "modify", "--local", name, "keyfile", str(key), cwd=project)


def outs_md5(project: Path) -> dict[str, str]:
    """Every stage output's md5 in dvc.lock: the names of its objects on a remote."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


def test_reviewer_pulls_over_ssh_and_has_nothing_to_reproduce(dvc_project, sshd, tmp_path):
    """`dvc push` to an `ssh://` remote (an sshd on 127.0.0.1, a key made for the test), `dvc pull` in a fresh
    clone, and `dvc repro` there runs nothing."""
    project, _ = dvc_project
    storage = tmp_path / "storage"
    add_ssh_remote(project, sshd, storage, sshd.key)
    try:
        pushed = dvc_over_ssh(sshd, "push", "-r", "reviewers", cwd=project)
        assert re.search(r"\d+ files? pushed", pushed.stdout), pushed.stdout
        clone = tmp_path / "clone"
        sh(["git", "clone", "-q", str(project), str(clone)], tmp_path)
        add_ssh_remote(clone, sshd, storage, sshd.key)
        dvc_over_ssh(sshd, "pull", "-r", "reviewers", cwd=clone)
        repro = dvc("repro", cwd=clone)
        assert ran_stages(repro.stdout) == set(), repro.stdout
        for out in ("results/metrics.json", "models/sr.safetensors"):
            assert (clone / out).read_bytes() == (project / out).read_bytes(), out
    finally:
        dvc("remote", "remove", "--local", "reviewers", cwd=project)


def test_a_push_over_ssh_that_stops_partway_resumes(dvc_project, sshd, tmp_path):
    """One object cannot be written on the remote (a folder stands where it goes): the push fails after
    sending the others; once the way is clear, the next push sends only what is missing, and a fresh
    clone pulls everything."""
    project, _ = dvc_project
    storage = tmp_path / "storage"
    md5 = outs_md5(project)["models/sr.safetensors"]
    blocker = storage / "files" / "md5" / md5[:2] / md5[2:]
    blocker.mkdir(parents=True)
    add_ssh_remote(project, sshd, storage, sshd.key)
    try:
        failed = dvc_over_ssh(sshd, "push", "-r", "reviewers", cwd=project, check=False)
        assert failed.returncode != 0, failed.stdout
        assert "1 files failed to upload" in failed.stderr, failed.stderr
        sent = [p for p in (storage / "files/md5").rglob("*") if p.is_file()]
        assert len(sent) > 1, "nothing was sent before the failure"
        blocker.rmdir()
        resumed = dvc_over_ssh(sshd, "push", "-r", "reviewers", cwd=project)
        assert "1 file pushed" in resumed.stdout, resumed.stdout  # the one object the first push could not send
        clone = tmp_path / "clone"
        sh(["git", "clone", "-q", str(project), str(clone)], tmp_path)
        add_ssh_remote(clone, sshd, storage, sshd.key)
        dvc_over_ssh(sshd, "pull", "-r", "reviewers", cwd=clone)
        assert (clone / "models/sr.safetensors").read_bytes() == (project / "models/sr.safetensors").read_bytes()
        assert dvc("status", cwd=clone).stdout.strip().startswith("Data and pipelines are up to date")
    finally:
        dvc("remote", "remove", "--local", "reviewers", cwd=project)


def test_a_wrong_ssh_key_is_a_one_line_error(dvc_project, sshd, tmp_path):
    """DVC's own message, one line naming the user and the host, no traceback (so medsr adds no wrapper)."""
    import ssh_server

    project, _ = dvc_project
    wrong = ssh_server.keygen(tmp_path / "not_authorized")
    add_ssh_remote(project, sshd, tmp_path / "storage", wrong, name="intruder")
    try:
        result = dvc_over_ssh(sshd, "push", "-r", "intruder", cwd=project, check=False)
    finally:
        dvc("remote", "remove", "--local", "intruder", cwd=project)
    assert result.returncode != 0
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line or "Error" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"Permission denied for user {sshd.user} on host 127.0.0.1" in errors[0], errors
    assert not (tmp_path / "storage").exists()  # nothing written


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
        medsr_params = sh([sys.executable, "-c", "from medsr.core.config import load_params; "
                           "p = load_params(['params.yaml']); print(p.data.source, p.sr_model.channel_mult)"],
                          project).stdout
        assert medsr_params.split()[0] == "kaggle"  # the overlay, through DVC's syntax, is valid medsr params
        planned = set(json.loads(dvc("status", "--json", cwd=project).stdout))
        assert {"download", "degrade", "train_sr", "classify@0", "classify@2", "evaluate"} <= planned
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
        assert snakemake_planned(snakemake_project) == {"classify", "merge_predictions", "evaluate"}
        set_params(snakemake_project, {"train_regression.learning_rate": 0.001})
        assert snakemake_planned(snakemake_project) == {"train_regression", "regress", "classify", "merge_predictions",
                                                        "evaluate"}
    finally:
        sh(["git", "checkout", "params.yaml"], snakemake_project)
    assert snakemake_planned(snakemake_project) == set()


def output_stamps(project: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under the DAG's output folders: (mtime in ns, bytes)."""
    return {name: (path.stat().st_mtime_ns, path.read_bytes()) for name, path in output_files(project).items()}


def test_dvc_commit_records_a_snakemake_run(snakemake_project):
    """The documented handoff (docs/pipeline.md): `dvc commit --force --no-relink` records a Snakemake run in dvc.lock
    and the cache without rewriting a file (a relink would give every output a new mtime, and Snakemake would plan
    generate, gather, classify, merge and evaluate again): then neither front end has anything to do."""
    before = output_stamps(snakemake_project)
    dvc("commit", "--force", "--no-relink", cwd=snakemake_project)
    assert output_stamps(snakemake_project) == before
    status = dvc("status", cwd=snakemake_project).stdout
    assert status.strip().startswith("Data and pipelines are up to date"), status
    assert snakemake_planned(snakemake_project) == set()
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
    """The report opens in a browser: a headless Chromium screenshot that is not blank, whose opening view starts at
    the top of the description and shows what the run found (`answer_text`, as the README's first screen) on its
    first screen, with tables that fit the page: none wider than the window, no cell taller than four lines (per-seed
    values stacked one a line were five), no word spilling out of its cell.
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

    from medsr.report.answer import answer_text
    from report_layout import measure

    layout = measure(chromium, report, tmp_path)
    width, height = layout["window"]
    answer = answer_text(json.loads((snakemake_project / "results/evaluation.json").read_text()))
    opening = next(p for p in layout["paragraphs"] if " ".join(p["text"].split()) == answer)
    assert layout["paragraphs"][0]["top"] >= 0, layout["paragraphs"][0]  # the top is in reach, not above the page
    assert 0 <= opening["top"] < height - 100, opening  # the answer is on the opening screen
    assert layout["tables"] and layout["description_right"] <= width
    for table in layout["tables"]:
        assert table["right"] <= width and table["max_lines"] <= 4 and not table["spilling"], table


# --- user-brought folders ------------------------------------------------------------------------

EXTERNAL = {"mine": "external/mine", "theirs": None}  # evaluate.external: relative, and absolute outside the project


def planned(front_end: str, project: Path) -> set[str]:
    """What a front end would run now, by rule (without @...): Snakemake's dry run, or the stages `dvc status` lists
    as changed (their descendants follow on `dvc repro`)."""
    if front_end == "snakemake":
        return snakemake_planned(project)
    return {name.split("@")[0] for name in json.loads(dvc("status", "--json", cwd=project).stdout)}


# What adding or changing an external folder reruns: Snakemake's plan, and the stages whose deps or params DVC sees
# changed (merge_predictions follows classify on `dvc repro`).
EXTERNAL_RERUNS = {"snakemake": {"classify", "merge_predictions", "evaluate"}, "dvc": {"classify", "evaluate"}}


@pytest.fixture(scope="module")
def external_projects(both_runs, tmp_path_factory):
    """A user adds their own SR after a finished run: in a copy of each front end's project (its files, their mtimes,
    Snakemake's records, DVC's cache), evaluate.external names two folders of the bicubic val and test images as
    <id>.png, `mine` inside the project (relative) and `theirs` beside it (absolute); DVC's user runs
    `medsr dvc-sync`. Gives {front end: (project, {name: folder}, what it then planned)}; each front end has then
    recorded the change by the documented handoff, as if it had run (`snakemake --touch`, `dvc commit --force
    --no-relink`) instead of running classify and evaluate: the tests read what each front end plans."""
    from medsr.core import io

    projects, _, _ = both_runs
    copies = {}
    for front_end, project in projects.items():
        where = tmp_path_factory.mktemp(f"{front_end}-external")
        copy = where / "project"
        shutil.copytree(project, copy, symlinks=True)
        folders = {name: copy / path if path else where / name for name, path in EXTERNAL.items()}
        for folder in folders.values():
            folder.mkdir(parents=True)
            for record in io.read_manifest(copy / "data/bicubic", split=("val", "test")):
                shutil.copy2(copy / "data/bicubic" / record.path, folder / f"{record.id}.png")
        set_params(copy, {"evaluate.external": {name: path or str(folders[name]) for name, path in EXTERNAL.items()}})
        if front_end == "dvc":
            sh(["medsr", "dvc-sync"], cwd=copy)
        added = planned(front_end, copy)
        if front_end == "dvc":
            dvc("commit", "--force", "--no-relink", cwd=copy)
        else:
            snakemake("--touch", "--cores", "1", cwd=copy)
        copies[front_end] = copy, folders, added
    return copies


def test_adding_an_external_folder_reruns_classify_and_evaluate_only(external_projects):
    """Both front ends, once evaluate.external names two folders (relative and absolute): classify, merge and evaluate
    are planned, nothing upstream; both folders are deps of classify and evaluate in dvc.yaml, as given; once
    recorded, neither front end has anything to do."""
    for front_end, (project, folders, added) in external_projects.items():
        assert added == EXTERNAL_RERUNS[front_end], front_end
        assert planned(front_end, project) == set(), front_end
    stages = yaml.safe_load((external_projects["dvc"][0] / "dvc.yaml").read_text())["stages"]
    folders = external_projects["dvc"][1]
    for stage in ("classify", "evaluate"):
        assert {EXTERNAL["mine"], str(folders["theirs"])} <= set(stages[stage]["deps"]), stage


@pytest.mark.parametrize("front_end, folder", [("snakemake", "theirs"), ("dvc", "mine")])
def test_changing_one_image_of_an_external_folder_reruns_classify_and_evaluate_only(external_projects, front_end,
                                                                                    folder):
    """One pixel of one image of an external folder changed in place: Snakemake plans classify, merge and evaluate,
    `dvc status` lists classify and evaluate (their deps changed; merge follows on `dvc repro`), nothing upstream.
    The original bytes written back, a newer file with the same content: nothing to do (Snakemake compares the
    checksums it recorded, DVC the folder's hash). Snakemake on the absolute folder, DVC on the relative one (both are
    deps of both front ends: tests/test_dag_agreement.py)."""
    from PIL import Image

    project, folders, _ = external_projects[front_end]
    image = sorted(folders[folder].glob("*.png"))[0]
    original = image.read_bytes()
    pixels = np.asarray(Image.open(image)).copy()
    pixels.flat[0] ^= 1
    Image.fromarray(pixels).save(image)
    try:
        assert planned(front_end, project) == EXTERNAL_RERUNS[front_end]
    finally:
        image.write_bytes(original)
    assert planned(front_end, project) == set()


# --- SLURM ------------------------------------------------------------------------------------

def start_slurm_run(local: Path, cluster: Cluster) -> subprocess.Popen:
    """`snakemake --profile workflow/profiles/slurm` (the README's SLURM command) in a clone of the local Snakemake
    repository, with the site overlay that fits the profile to the one-node cluster (tests/slurm_cluster.py:
    one CPU and one thread per job, like the local `--cores 2 --max-threads 1`), in the background."""
    clone = local.parent / "slurm"
    sh(["git", "clone", "-q", str(local), str(clone)], local.parent)
    site = site_profile(cluster, clone / "workflow/profiles/slurm", local.parent / "slurm-site")
    return snakemake_on(cluster, clone, site, background=True)


def output_files(project: Path) -> dict[str, Path]:
    return {path.relative_to(project).as_posix(): path for folder in ("data", "models", "checkpoints", "results")
            for path in sorted((project / folder).rglob("*")) if path.is_file()}


def assert_same_file(local: Path, slurm: Path) -> None:
    """Byte for byte, but for what records the run's own circumstances: a torch checkpoint is a zip whose
    records are named after its atomic write's temporary file (compared object by object), and
    evaluation.json's provenance holds the date."""
    import torch

    if local.suffix == ".pt":
        a, b = (torch.load(p, map_location="cpu", weights_only=False) for p in (local, slurm))
        flat_a, flat_b = (torch.utils._pytree.tree_flatten(x) for x in (a, b))
        assert flat_a[1] == flat_b[1], f"{local.name}: different structure"
        for x, y in zip(flat_a[0], flat_b[0]):
            assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y, local.name
    elif local.name == "evaluation.json":
        a, b = (json.loads(p.read_text()) for p in (local, slurm))
        for results in (a, b):
            results["provenance"].pop("date_utc")
        assert a == b, local.name
    else:
        assert local.read_bytes() == slurm.read_bytes(), local.name


def test_slurm_runs_the_dag_like_the_local_run(both_runs, slurm_cluster):
    """Under the SLURM profile (started in both_runs): every job but the profile's local rules is submitted,
    runs, and is accounted (`sacct`) on the partition the profile gives its rule, with one GPU (`gres/gpu=1`)
    exactly where the rule declares `gpu=1`; every output equals the local Snakemake run's. Needs Debian's
    slurm-wlm, munge and mariadb-server, and root (`.ci/run` installs them); without, skipped with the reason."""
    projects, _, on_slurm = both_runs
    stdout, stderr = on_slurm.communicate(timeout=900)
    output = stdout + stderr
    assert on_slurm.returncode == 0, output
    # Snakemake's job blocks ("rule X:" ... "jobid: N" ... "resources: ...") and its submissions of job N
    gpu = {jobid: "gpu=1" in resources.split(", ") for jobid, resources in
           re.findall(r"\n    jobid: (\d+)\n(?:    .*\n)*?    resources: (.*)", output)}
    submitted = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: \S+/slurm_logs/rule_(\w+)/",
                           output)
    expected = sorted(stage.split("@")[0] for stage in ALL_STAGES if not stage.startswith(LOCAL_RULES))
    assert sorted(rule for _, _, rule in submitted) == expected, output  # gather, merge_predictions: local rules
    assert sum(gpu.values()) == 9, gpu  # train_sr, train_regression, 2 classifiers, regress, 4 generate shards
    accounted = {job["id"]: job for job in slurm_cluster.jobs()}
    assert set(accounted) == {slurm_id for _, slurm_id, _ in submitted}, accounted
    local, clone = projects["snakemake"], projects["snakemake"].parent / "slurm"
    profile = yaml.safe_load((clone / "workflow/profiles/slurm/config.yaml").read_text())
    for jobid, slurm_id, rule in submitted:
        job = accounted[slurm_id]
        partition = profile["set-resources"].get(rule, {}).get("slurm_partition",
                                                               profile["default-resources"]["slurm_partition"])
        assert job["state"] == "COMPLETED" and job["partition"] == partition, (rule, job)
        assert ("gres/gpu=1" in job["tres"].split(",")) == gpu[jobid], (rule, job)
    slurm_files, local_files = output_files(clone), output_files(local)
    assert set(local_files) - set(slurm_files) <= {"results/report.html"}  # the report test's
    assert set(slurm_files) <= set(local_files) and "results/metrics.json" in slurm_files
    for name, path in slurm_files.items():
        assert_same_file(local_files[name], path)


# --- a user's own classifier (evaluate.deployed) ----------------------------------------------------

DEPLOYED_STAGES = {"classify_deployed", "evaluate"}


def deploy(project: Path, model: Path) -> str:
    """`model` copied into the project and named in its params.yaml as evaluate.deployed (the smoke images' size
    and the [-1, 1] normalisation it was trained with); for DVC, `medsr dvc-sync` writes its stage, as the docs
    say."""
    target = project / "models/user" / model.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model, target)
    set_params(project, {"evaluate.deployed.file": f"models/user/{model.name}",
                         "evaluate.deployed.architecture": "resnet18" if model.suffix == ".safetensors" else "",
                         "evaluate.deployed.image_size": 32, "evaluate.deployed.mean": [0.5],
                         "evaluate.deployed.std": [0.5]})
    if (project / "dvc.lock").exists():
        sh(["medsr", "dvc-sync"], project)
    return model.name


@pytest.fixture(scope="module")
def deployed_runs(both_runs, tmp_path_factory):
    """Copies of both finished smoke runs given a small classifier trained here, exported in both formats. First
    Snakemake runs the .pt2 and DVC the .safetensors up to classify_deployed's predictions (what a format changes),
    then the other way round through evaluate. Per front end and round: what it planned, what it ran, the deployed
    predictions, and (the last round) the results JSON."""
    from test_deployed import export, save_weights, train_small_classifier

    where = tmp_path_factory.mktemp("deployed")
    projects = {name: where / name for name in ("snakemake", "dvc")}
    for name, project in projects.items():
        shutil.copytree(both_runs[0][name], project, symlinks=True)
    model = train_small_classifier(projects["snakemake"] / "data/hr", 32)
    models = {"pt2": export(model, where / "mine.pt2"), "safetensors": save_weights(model, where / "mine.safetensors")}
    rounds = []
    for (snake_format, dvc_format), target in ((("pt2", "safetensors"), ["classify_deployed"]),
                                               (("safetensors", "pt2"), [])):
        names = {"snakemake": deploy(projects["snakemake"], models[snake_format]),
                 "dvc": deploy(projects["dvc"], models[dvc_format])}
        planned = {"snakemake": snakemake_planned(projects["snakemake"]),
                   "dvc": set(json.loads(dvc("status", "--json", cwd=projects["dvc"]).stdout))}
        snake_target = ["results/deployed/predictions.csv"] if target else []
        repro, snake = run_together([([sys.executable, "-m", "dvc", "repro", *target], projects["dvc"]),
                                     ([sys.executable, "-m", "snakemake", "--cores", "1", *snake_target],
                                      projects["snakemake"])])
        rounds.append({"names": names, "planned": planned, "ran": {"dvc": ran_stages(repro.stdout)},
                       "predictions": {f: list(csv.DictReader((p / "results/deployed/predictions.csv").open()))
                                       for f, p in projects.items()},
                       "results": {f: json.loads((p / "results/evaluation.json").read_text())
                                   for f, p in projects.items()} if not target else None})
    return projects, rounds


def test_a_users_classifier_in_both_formats_gets_q1_verdicts_in_both_front_ends(deployed_runs):
    projects, rounds = deployed_runs
    for r in rounds:
        assert r["planned"]["snakemake"] == DEPLOYED_STAGES, r["planned"]
        assert r["planned"]["dvc"] <= DEPLOYED_STAGES and "classify_deployed" in r["planned"]["dvc"], r["planned"]
    assert rounds[0]["ran"]["dvc"] == {"classify_deployed"} and rounds[1]["ran"]["dvc"] == DEPLOYED_STAGES, rounds
    for front_end, results in rounds[-1]["results"].items():
        deployed = results["deployed"]
        assert deployed["classifier"]["file"] == f"models/user/{rounds[-1]['names'][front_end]}"
        assert {v["question"] for v in deployed["verdicts"]} == {"Q1"}
        assert {v["first"] for v in deployed["verdicts"]} >= {"regression@deployed", "sr_null@deployed"}
        assert all(v["verdict"] in ("first_better", "second_better", "inconclusive", "no_verdict")
                   for v in deployed["verdicts"])
    # one classifier in two formats: the same rows, and the same scores up to float summation order
    for front_end in ("snakemake", "dvc"):
        first, second = (r["predictions"][front_end] for r in rounds)
        assert [(a["set"], a["split"], a["id"]) for a in first] == [(b["set"], b["split"], b["id"]) for b in second]
        assert max(abs(float(a["prob_unhealthy"]) - float(b["prob_unhealthy"])) for a, b in zip(first, second)) < 1e-4
    snakemake("--report", "results/report.html", cwd=projects["snakemake"])
    html = (projects["snakemake"] / "results/report.html").read_text(errors="replace")
    assert f"deployed: {rounds[-1]['names']['snakemake']}" in html and "conditional on this one classifier" in html
    summary = (projects["dvc"] / "results/figures/summary.rst").read_text()  # DVC's report: the figures folder
    assert f"deployed: {rounds[-1]['names']['dvc']}" in summary and "conditional on this one classifier" in summary
    assert dvc("status", cwd=projects["dvc"]).stdout.strip().startswith("Data and pipelines are up to date")
    assert snakemake_planned(projects["snakemake"]) == set()


def flip_one_byte(path: Path) -> tuple[bytes, os.stat_result]:
    """The file with one byte changed (a weight's high byte: other scores); returns what to restore."""
    data, stat = path.read_bytes(), path.stat()
    changed = bytearray(data)
    changed[-1] ^= 0x01
    path.write_bytes(bytes(changed))
    return data, stat


def test_one_changed_byte_of_the_deployed_classifier_reruns_its_stage_and_evaluate_only(deployed_runs):
    projects, rounds = deployed_runs
    for front_end, project in projects.items():
        model = project / "models/user" / rounds[-1]["names"][front_end]
        original, stat = flip_one_byte(model)
        try:
            if front_end == "dvc":  # the stage whose own dependency changed; evaluate follows on repro
                assert set(json.loads(dvc("status", "--json", cwd=project).stdout)) == {"classify_deployed"}
                assert descendants(project, "classify_deployed") == {"evaluate"}
            else:
                assert snakemake_planned(project) == DEPLOYED_STAGES
        finally:
            model.write_bytes(original)
            os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        if front_end == "dvc":
            assert dvc("status", cwd=project).stdout.strip().startswith("Data and pipelines are up to date")
        else:
            assert snakemake_planned(project) == set()
