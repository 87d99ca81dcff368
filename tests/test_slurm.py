"""Jobs under a real SLURM controller (tests/slurm_cluster.py), submitted through the project's profile,
workflow/profiles/slurm, by the Snakemake SLURM executor plugin: a job that fails names its logs; a cancelled
job is resubmitted once (the profile's `retries: 1`), and one cancelled on every try is reported, never taken
as done. One Snakemake run (`--keep-going`) holds the three cases, so their waits overlap. The smoke DAG under
SLURM, compared with the local run, is in tests/test_pipeline.py."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from project import ROOT
from slurm_cluster import Cluster, site_profile, snakemake_on

pytestmark = pytest.mark.pipeline

# `held_*` write part of their output first (as a killed training would), then wait for the test's go-ahead
SNAKEFILE = """
rule all:
    input: "fails.txt", "retried.txt", "cancelled.txt"

rule fails:
    output: "fails.txt"
    log: "logs/fails.log"
    shell: "(echo partial > {output}; echo 'the rule failed on purpose' >&2; exit 3) 2> {log}"

rule held:
    output: "{name}.txt"
    wildcard_constraints: name="retried|cancelled"
    shell: "echo partial > {output}; until [ -e {wildcards.name}.go ]; do sleep 0.2; done; echo done >> {output}"
"""


def running(cluster: Cluster, rule: str, other_than: set[str], process: subprocess.Popen,
            timeout: float = 180) -> str:
    """The SLURM id of a running job whose comment (the plugin's `rule_<name>...`) names `rule`, other than
    `other_than`: the rule's next try."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"snakemake exited before {rule} ran:\n" + "\n".join(process.communicate()))
        queue = cluster.run("squeue", "--noheader", "--states=RUNNING", "--format=%i|%k").stdout.split()
        ids = {i for i, _, comment in (line.partition("|") for line in queue) if rule in comment} - other_than
        if ids:
            return min(ids, key=int)
        time.sleep(0.5)
    raise AssertionError(f"no new running job of {rule} within {timeout} s")


@pytest.fixture(scope="module")
def run(slurm_cluster, tmp_path_factory):
    """The three cases in one `snakemake --keep-going` under SLURM: `fails` exits 3 on both tries; `retried` is
    cancelled while it runs, and its retry is let through; `cancelled` is cancelled on both tries. Returns the
    project, Snakemake's exit status and output, each rule's SLURM ids in submission order, and every
    job's accounted state."""
    where = tmp_path_factory.mktemp("jobs")
    project = where / "project"
    project.mkdir()
    (project / "Snakefile").write_text(SNAKEFILE)
    site = site_profile(slurm_cluster, ROOT / "workflow/profiles/slurm", where / "site")
    process = snakemake_on(slurm_cluster, project, site, "--keep-going", background=True)
    try:
        retried = running(slurm_cluster, "retried", set(), process)
        slurm_cluster.run("scancel", retried)
        (project / "retried.go").touch()  # its retry runs through
        first = running(slurm_cluster, "cancelled", set(), process)
        slurm_cluster.run("scancel", first)
        second = running(slurm_cluster, "cancelled", {first}, process)
        slurm_cluster.run("scancel", second)
        stdout, stderr = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    output = stdout + stderr
    ids: dict[str, list[str]] = {}  # by the last folder of the job's log: rule_fails, retried, cancelled
    for slurm_id, log in re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)", output):
        ids.setdefault(Path(log).parent.name, []).append(slurm_id)
    states = {job["id"]: job["state"] for job in slurm_cluster.jobs()}
    return project, process.returncode, output, ids, states


def test_a_failing_rule_names_its_log_and_the_slurm_jobs_log(run):
    project, returncode, output, ids, states = run
    assert returncode != 0, output
    assert len(ids["rule_fails"]) == 2, output  # the first try and the profile's one retry
    assert [states[i] for i in ids["rule_fails"]] == ["FAILED", "FAILED"], states
    last = ids["rule_fails"][-1]
    slurm_log = project / f".snakemake/slurm_logs/rule_fails/{last}.log"
    assert f"SLURM-job '{last}' failed, SLURM status is: 'FAILED'" in output, output
    assert f"log: logs/fails.log, {slurm_log} (check log file(s) for error details)" in output, output
    assert "the rule failed on purpose" in (project / "logs/fails.log").read_text()
    assert "Error in rule fails" in slurm_log.read_text()  # the job's own account of what failed
    assert not (project / "fails.txt").exists()  # the failed job's partial output is not kept


def test_a_cancelled_job_is_resubmitted_and_its_retry_completes(run):
    project, _, output, ids, states = run
    assert [states[i].split()[0] for i in ids["retried"]] == ["CANCELLED", "COMPLETED"], (ids, states)
    assert f"SLURM-job '{ids['retried'][0]}' failed, SLURM status is: 'CANCELLED'" in output, output
    assert (project / "retried.txt").read_text() == "partial\ndone\n"  # written whole by the retry


def test_a_job_cancelled_on_every_try_is_reported_not_taken_as_done(run, slurm_cluster):
    project, returncode, output, ids, states = run
    assert returncode != 0, output
    assert [states[i].split()[0] for i in ids["cancelled"]] == ["CANCELLED", "CANCELLED"], (ids, states)
    assert f"SLURM-job '{ids['cancelled'][1]}' failed, SLURM status is: 'CANCELLED'" in output, output
    assert not (project / "cancelled.txt").exists()  # the output it wrote before the cancel is removed
    planned = snakemake_on(slurm_cluster, project, project.parent / "site", "--dry-run").stdout
    assert "output: cancelled.txt" in planned and "output: retried.txt" not in planned, planned  # still to do
