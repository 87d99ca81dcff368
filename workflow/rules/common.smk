# Configuration shared by all rules: params.yaml (plus --configfile overlays) validated by medsr's own loader
# (one-line errors naming the key) and against the JSON schema exported from it, so Snakemake and the `medsr`
# commands accept exactly the same parameters. Each rule's command is rendered by the stage table
# (stage_command below) and its source files come from the import graph of its stage's module
# (medsr.tools.sources.source_files): editing a module reruns every stage that imports it.
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from medsr.core.config import load_raw, params_from_dict
from medsr.core.parameters import ARCHITECTURES, DATA_DOMAINS, GUIDANCE_MODES, GUIDE_ARCHITECTURE
from medsr.core.errors import MedsrError
from medsr.stages.gather import shard_folders
from medsr.data.image_sets import sr_folder
from medsr.stages import (
    BY_RULE,
    CLASSIFIER_LOG,
    CLASSIFIER_MODEL,
    DEPLOYED_PREDICTIONS,
    LOGS,
    PREDICTIONS_SHARD,
    SR_DOMAIN,
    SR_MODEL,
    STUDENT_FILES,
    check_user_files,
    classifier_files,
    command,
    deployed_files,
    generate_model,
    prediction_files,
    training_logs,
    user_input_files,
)
from medsr.tools.sources import source_files


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
    check_user_files(PARAMS)  # a missing evaluate.external folder, named by its key, before any job runs
except MedsrError as err:
    raise WorkflowError(f"medsr: {err}")
validate(config, "../schemas/params.schema.json")

# The argument every medsr command gets, e.g. "--params params.yaml --params configs/thesis.yaml".
PARAMS_ARGS = " ".join(f"--params {f}" for f in PARAM_FILES)
ENV = "../envs/medsr.yaml"
# Threads of the torch stages. Snakemake sets OMP_NUM_THREADS to a job's threads (1 unless declared),
# and caps threads at --cores locally; the SLURM profile sets them per rule (set-threads).
TORCH_THREADS = 8

# GPU rules declare `gpu=1` (SLURM: one --gpus=1 job each; locally `--resources gpu=1` runs one GPU job at a
# time) and `gpu_mem_mb`, an estimate of the GPU memory a job peaks at with the thesis sizes (configs/thesis.yaml:
# 41 M-parameter U-Net, batch 32, crop 64, bf16; ResNet18/DenseNet121 at 128 x 128), CUDA context included and
# rounded up; train_sr's is large because, for a bitwise resume, its attention runs as an explicit softmax
# (medsr.diffusion.unet.attention: an N^2 matrix per head, N = 4096 pixels at crop 64; cuda_check reports the
# peak as train peak_memory_mb). Locally `--resources gpu_mem_mb=120000` (about 85 % of one H200) lets as many
# jobs share one GPU as fit; smaller params need less, so the estimates only err on the safe side. Not measured
# per rule yet.
GPU_MEM_MB = {
    "train_sr": 48000,
    "train_student": 48000,
    "train_regression": 12000,
    "train_classifier": 10000,
    "generate": 6000,
    "regress": 4000,
}

# Among ready jobs, the longest chain goes first: degrade -> train_sr -> generate (then gather, classify); the
# classifiers fill the other core. Without priorities Snakemake may start train_sr late, after many classifiers,
# and the chain then sets the run's end (docs/pipeline.md "Where the defaults come from"). DVC runs one stage at a
# time and has no use for them.
PRIORITY = {"degrade": 3, "train_sr": 2, "generate": 1}

GUIDANCE = list(PARAMS.generate.guidance)
SAMPLING_SEEDS = list(PARAMS.evaluate.sampling_seeds)
TRAIN_SEEDS = list(PARAMS.evaluate.train_seeds)
# Folders a command passes, the files in them being its inputs (the CLI or the stage expands them, medsr.stages).
CLASSIFIERS = "models/classifiers"
TRAIN_LOGS = "results/train"
PREDICTIONS = "results/predictions"  # classify's seed<seed>.csv under it (PREDICTIONS_SHARD): merge_predictions
SR_SETS = "results/sr/eval"  # <guidance>/seed<seed> under it: medsr.data.image_sets.sr_folder
SR_SHARDS = "results/sr/shards/{guidance}/seed{seed}"  # shard<k> under it: medsr.stages.gather.shard_folders
# predicted guidance's classifier: resnet18 (GUIDE_ARCHITECTURE) on bicubic images, first train seed
# the HR classifier of a rule's {arch} and {seed}: where every classifier of another domain starts (fine-tuning)
HR_CLASSIFIER = f"{CLASSIFIERS}/{CLASSIFIER_MODEL.format(arch='{arch}', domain='hr', seed='{seed}')}"
# the model generate samples: train-sr's, or train-student's one-step student for generate.sampler student
GENERATE_MODEL = generate_model(PARAMS)


def deployed_classifier(wildcards):
    """The user's own classifier (evaluate.deployed.file): classify_deployed's input, needed only when it is set."""
    return PARAMS.evaluate.deployed.file


GUIDE = f"{CLASSIFIERS}/{CLASSIFIER_MODEL.format(arch=GUIDE_ARCHITECTURE, domain='bicubic', seed=TRAIN_SEEDS[0])}"


wildcard_constraints:
    arch="|".join(ARCHITECTURES),
    guidance="|".join(GUIDANCE_MODES),
    domain="|".join(DATA_DOMAINS),
    seed=r"\d+",
    shard=r"\d+",


def stage_params(rule):
    """The parameters the stage table says `rule` reads, as {name: value}; Snakemake reruns it when one changes."""
    values = {}
    for name in BY_RULE[rule].params:
        value = config
        for part in name.split("."):
            value = value[part]
        values[name] = value
    return values


def stage_command(rule, **folders):
    """The job's `medsr` command, rendered by the stage table (medsr.stages.command): each path argument is the
    rule's input or output of that name, or its folder in `folders` (its input then lists the files in it), each
    option the wildcard of its key; the log is the table's (LOGS)."""
    options = BY_RULE[rule].options

    def render(wildcards, input, output):
        keys = dict(wildcards.items())
        values = dict(input.items()) | dict(output.items())
        values |= {name: folder.format(**keys) for name, folder in folders.items()}
        values |= {o.name: keys[o.wildcard] for o in options if o.wildcard in keys}
        return command(rule, values, PARAMS_ARGS, LOGS[rule].format(**keys))

    return render


def sr_sets():
    return [str(sr_folder(SR_SETS, g, s)) for g in GUIDANCE for s in SAMPLING_SEEDS]


def generation_shards(wildcards):
    return [str(p) for p in shard_folders(PARAMS.generate, SR_SHARDS.format(**dict(wildcards.items())))]


def classifier_models():
    """Every classifier: a classify job reads its seed's, but depends on all of them (as dvc.yaml's stage on their
    folder, which stays right whatever train_classifier.architectures and evaluate.sr_classifier say)."""
    return [str(p) for p in classifier_files(Path(CLASSIFIERS), PARAMS)]


def prediction_shards():
    return [str(p) for p in prediction_files(Path(PREDICTIONS), PARAMS)]


def all_training_logs():
    return [str(p) for p in training_logs(Path(TRAIN_LOGS), PARAMS)]


def user_inputs(rule):
    """The files inside the folders (and the files) a user brings that the rule's stage reads (medsr.stages.USER_PATHS:
    each evaluate.external folder for classify and evaluate): changing one reruns the rule, as DVC's dependency on
    the folder does."""
    return user_input_files(PARAMS, BY_RULE[rule].command)
