"""Where a run's time goes: one Snakemake run's log read into its jobs, core-seconds per rule, and idle cores.

    python3 -m venv .venv && .venv/bin/pip install ... && snakemake --cores 2 --max-threads 1   # the README's command
    .venv/bin/python benchmarks/run_time.py RUN_FOLDER [--total-s S] [--log LOG] [--out JSON]

Every job of the README's command runs one thread (`--max-threads 1`), so a job's wall seconds are its
core-seconds. From the log's start and finish stamps (one-second resolution; `--log`, else the newest log under
RUN_FOLDER/.snakemake/log): per rule, its jobs, core-seconds and share of the run; the seconds during which 0, 1,
2, ... jobs ran (idle core-seconds: cores x wall - busy); each classifier job's epochs (RUN_FOLDER/results/train,
medsr.stages.CLASSIFIER_LOG) and seconds per epoch, process start included. With `--total-s` (the README
command's seconds end to end, install included, measured by the caller) the time outside the jobs (install,
Snakemake's start), the excess over the 15-minute budget (`BUDGET_S`), and the core-seconds the jobs would have
to lose to meet it with the idle time and the time outside the jobs unchanged.

Prints a table and writes results/benchmarks/run_time.json. Reads a finished run; runs nothing and chooses nothing.
"""

from __future__ import annotations

import argparse
import datetime
import re
from pathlib import Path

from medsr.core.io import read_csv, write_json
from medsr.core.provenance import cpu_model
from medsr.stages import CLASSIFIER_LOG

BUDGET_S = 15 * 60  # the README's run command, install included, on 2 cores (the developers' brief)
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?rule (\w+):$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")
FIELD = re.compile(r"^    (\w+): (.*)$")
CLASSIFIER_RULES = ("train_classifier", "finetune_classifier")


def _stamp(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%a %b %d %H:%M:%S %Y")


def parse_log(text: str) -> list[dict]:
    """The run's jobs, each {jobid, rule, wildcards, start, end} with datetimes; the `all` target left out.

    Snakemake writes a job's block as a `[date]` line, `(local)rule NAME:`, indented `field: value` lines (jobid,
    wildcards, ...), and its end as a `[date]` line followed by `Finished jobid: N (Rule: NAME)`.
    """
    jobs: dict[int, dict] = {}
    stamp, opened = None, None
    for line in text.splitlines():
        if match := STAMP.match(line):
            stamp, opened = _stamp(match.group(1)), None
        elif (match := START.match(line)) and stamp is not None:
            opened = {"rule": match.group(1), "wildcards": {}, "start": stamp, "end": None}
        elif opened is not None and (match := FIELD.match(line)):
            key, value = match.groups()
            if key == "jobid":
                jobs[int(value)] = opened | {"jobid": int(value)}
                opened = jobs[int(value)]
            elif key == "wildcards":
                opened["wildcards"] = dict(pair.split("=", 1) for pair in value.split(", "))
        elif (match := FINISHED.match(line)) and stamp is not None:
            jobid = int(match.group(1))
            if jobid in jobs:
                jobs[jobid]["end"] = stamp
            opened = None
    unfinished = sorted(j["rule"] for j in jobs.values() if j["end"] is None and j["rule"] != "all")
    if unfinished:
        raise SystemExit(f"run_time: the log has jobs without an end (an unfinished run?): {', '.join(unfinished)}")
    return sorted((j for j in jobs.values() if j["rule"] != "all"), key=lambda j: (j["start"], j["jobid"]))


def busy_seconds(jobs: list[dict]) -> dict[int, float]:
    """{k: seconds during which exactly k jobs ran}, between the first job's start and the last one's end."""
    events = sorted([(j["start"], 1) for j in jobs] + [(j["end"], -1) for j in jobs], key=lambda e: (e[0], e[1]))
    out: dict[int, float] = {}
    running, previous = 0, events[0][0]
    for when, change in events:
        out[running] = out.get(running, 0.0) + (when - previous).total_seconds()
        running, previous = running + change, when
    return {k: s for k, s in sorted(out.items()) if s > 0}


def classifier_epochs(train_logs: Path, job: dict) -> int | None:
    """Epochs a classifier job ran: the rows of its training history (None where the file is missing)."""
    wildcards = job["wildcards"]
    path = train_logs / CLASSIFIER_LOG.format(arch=wildcards.get("arch"), domain=wildcards.get("domain"),
                                              seed=wildcards.get("seed"))
    if not path.is_file():
        return None
    return len(read_csv(path))


def summarize(jobs: list[dict], cores: int, train_logs: Path, total_s: float | None) -> dict:
    seconds = {j["jobid"]: (j["end"] - j["start"]).total_seconds() for j in jobs}
    wall = (max(j["end"] for j in jobs) - min(j["start"] for j in jobs)).total_seconds()
    busy = sum(seconds.values())
    rules: dict[str, dict] = {}
    for job in jobs:
        row = rules.setdefault(job["rule"], {"rule": job["rule"], "jobs": 0, "core_s": 0.0})
        row["jobs"] += 1
        row["core_s"] += seconds[job["jobid"]]
    for row in rules.values():
        row["share"] = row["core_s"] / busy if busy else 0.0
    classifiers = []
    for job in jobs:
        if job["rule"] in CLASSIFIER_RULES:
            epochs = classifier_epochs(train_logs, job)
            classifiers.append({"rule": job["rule"], **job["wildcards"], "epochs": epochs, "s": seconds[job["jobid"]],
                                "s_per_epoch": seconds[job["jobid"]] / epochs if epochs else None})
    out = {"benchmark": "run_time", "cores": cores, "snakemake_jobs_s": wall, "busy_core_s": busy,
           "idle_core_s": cores * wall - busy, "seconds_with_jobs_running": busy_seconds(jobs),
           "rules": sorted(rules.values(), key=lambda r: -r["core_s"]), "classifiers": classifiers,
           "classifier_epochs": sum(c["epochs"] or 0 for c in classifiers), "budget_s": BUDGET_S,
           "total_s": total_s}
    if total_s is not None:
        out["outside_jobs_s"] = total_s - wall
        # to meet the budget with the idle time as it is, the jobs' core-seconds must shrink by cores x the excess
        out["over_budget_s"] = max(0.0, total_s - BUDGET_S)
        out["core_s_to_lose"] = cores * out["over_budget_s"]
    return out


def newest_log(run: Path) -> Path:
    logs = sorted((run / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        raise SystemExit(f"run_time: no Snakemake log under {run / '.snakemake' / 'log'}")
    return logs[-1]


def table(out: dict) -> str:
    lines = [f"{'rule':<22}{'jobs':>5}{'core-s':>9}{'share':>8}"]
    lines += [f"{r['rule']:<22}{r['jobs']:>5}{r['core_s']:>9.0f}{r['share']:>8.1%}" for r in out["rules"]]
    lines.append(f"jobs' wall {out['snakemake_jobs_s']:.0f} s on {out['cores']} cores: busy {out['busy_core_s']:.0f} "
                 f"core-s, idle {out['idle_core_s']:.0f} core-s; seconds with k jobs running "
                 + ", ".join(f"{k}: {s:.0f}" for k, s in out["seconds_with_jobs_running"].items()))
    epochs = [c for c in out["classifiers"] if c["epochs"]]
    if epochs:
        per_epoch = sum(c["s"] for c in epochs) / out["classifier_epochs"]
        lines.append(f"classifiers: {out['classifier_epochs']} epochs, {per_epoch:.1f} s per epoch "
                     "(process start included)")
    if out.get("total_s") is not None:
        lines.append(f"README command: {out['total_s']:.0f} s = jobs {out['snakemake_jobs_s']:.0f} s + "
                     f"{out['outside_jobs_s']:.0f} s outside them (install, Snakemake's start); budget "
                     f"{out['budget_s']} s, over by {out['over_budget_s']:.0f} s: {out['core_s_to_lose']:.0f} core-s "
                     "to lose at this idle time")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run's folder (a clone where the README's command ran)")
    parser.add_argument("--log", type=Path, help="the Snakemake log (default: the newest under RUN/.snakemake/log)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--total-s", type=float,
                        help="seconds the README's command took end to end, install included (measured by the caller)")
    parser.add_argument("--note", default="", help="what the run was (commit, machine), recorded as is")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/run_time.json"))
    args = parser.parse_args()
    log = args.log or newest_log(args.run)
    out = summarize(parse_log(log.read_text()), args.cores, args.run / "results" / "train", args.total_s)
    header = next((line.split(":", 1)[1].strip() for line in log.read_text().splitlines()
                   if line.strip().startswith("Platform:")), None)
    out |= {"log": log.name, "log_platform": header, "cpu_reading_the_log": cpu_model(), "note": args.note}
    print(table(out))
    write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
