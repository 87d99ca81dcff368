# Configuration shared by all rules: params.yaml (plus --configfile overlays) validated against
# workflow/schemas/params.schema.yaml by medsr's own loader, so Snakemake and the `medsr` commands
# accept exactly the same parameters and stop with the same one-line error naming the bad key.
from pathlib import Path

from snakemake.exceptions import WorkflowError

from medsr.config import load_raw, params_from_dict
from medsr.errors import MedsrError


configfile: "params.yaml"


def _relative(path):
    """An overlay path as given, relative to the working folder when inside it (portable commands)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


PARAM_FILES = ["params.yaml", *(_relative(f) for f in workflow.overwrite_configfiles)]
if load_raw(PARAM_FILES) != config:
    raise WorkflowError(
        "medsr: --config overrides are not passed on to the medsr commands; put them in a YAML "
        "file and give it with --configfile instead"
    )
try:
    PARAMS = params_from_dict(config, " + ".join(PARAM_FILES))
except MedsrError as err:
    raise WorkflowError(f"medsr: {err}")

# The argument every medsr command gets, e.g. "--params params.yaml --params configs/thesis.yaml".
PARAMS_ARGS = " ".join(f"--params {f}" for f in PARAM_FILES)
ENV = "../envs/medsr.yaml"
# Threads of the torch stages. Snakemake sets OMP_NUM_THREADS to a job's threads (1 unless declared),
# and caps threads at --cores locally; the SLURM profile sets them per rule (set-threads).
TORCH_THREADS = 8

GUIDANCE = list(PARAMS.generate.guidance)
SEEDS = list(PARAMS.evaluate.sampling_seeds)
SHARDS = sorted(PARAMS.generate.shards)


wildcard_constraints:
    guidance="null|predicted|oracle",
    seed=r"\d+",
    shard=r"\d+",


def param_values(*names):
    """The parameters a job reads, as {name: value}; Snakemake reruns the job when one changes."""
    values = {}
    for name in names:
        value = config
        for part in name.split("."):
            value = value[part]
        values[name] = value
    return values


def code(*parts):
    """Source files a job runs (a folder stands for its *.py files), so code edits rerun it too."""
    files = []
    for part in parts:
        path = Path("src/medsr") / part
        files += sorted(str(p) for p in path.glob("*.py")) if path.is_dir() else [str(path)]
    return files


def sr_sets(root):
    return expand(f"{root}/{{guidance}}/seed{{seed}}", guidance=GUIDANCE, seed=SEEDS)


def parent(name, levels=1):
    """The folder `levels` above the first file of input `name` (a folder of several inputs)."""
    return lambda wildcards, input: str(Path(input[name][0]).parents[levels - 1])
