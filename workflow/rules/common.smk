# Configuration shared by all rules: params.yaml (plus --configfile overlays) validated by medsr's own loader
# (one-line errors naming the key) and against the JSON schema exported from it, so Snakemake and the `medsr`
# commands accept exactly the same parameters.
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from medsr.core.config import load_raw, params_from_dict
from medsr.core.errors import MedsrError
from medsr.core.parameters import ARCHITECTURES, DATA_DOMAINS, GUIDANCE_MODES
from medsr.tools.user_paths import check_user_files
from medsr.tools.snakemake_rules import relative, snakemake_rules, targets


configfile: "params.yaml"


PARAM_FILES = ["params.yaml", *(relative(f) for f in workflow.overwrite_configfiles)]
if load_raw(PARAM_FILES) != config:
    raise WorkflowError(
        "medsr: --config overrides are not passed on to the medsr commands; put them in a YAML "
        "file and give it with --configfile instead"
    )
try:
    PARAMS = params_from_dict(config, " + ".join(PARAM_FILES))
    check_user_files(PARAMS)  # a missing evaluate.external folder, named by its key, before any job runs
except MedsrError as err:
    raise WorkflowError(f"medsr: {err}")
validate(config, "../schemas/params.schema.json")

# The argument every medsr command gets, e.g. "--params params.yaml --params configs/thesis.yaml".
PARAMS_ARGS = " ".join(f"--params {f}" for f in PARAM_FILES)
ENV = "../envs/medsr.yaml"
RULES = snakemake_rules(PARAMS, config, PARAMS_ARGS)  # one per rule of the stage table in this DAG
TARGETS = targets(PARAMS)


wildcard_constraints:
    arch="|".join(ARCHITECTURES),
    guidance="|".join(GUIDANCE_MODES),
    domain="|".join(DATA_DOMAINS),
    seed=r"\d+",
    shard=r"\d+",
