"""The stage table: every `medsr <stage>` command, declared once.

Each row names the module whose `run(*sections, **paths, **options)` the command calls, the params.yaml
sections it receives (in order), its path arguments (read or written) and its other options. The CLI is built
from this table (`medsr.cli`); every command line the two front ends run is rendered by `command` (the Snakemake
rules from their named inputs, outputs and wildcards, dvc.yaml's by `medsr.tools.dvc_yaml` from its deps, outs and
matrix keys); Snakemake's rules take each stage's source files from `source_files` (the import graph of its
module), and tests/test_dag_agreement.py proves that the Snakefile and dvc.yaml run these commands with these
sections and source files. The paths a user brings in params.yaml (`USER_PATHS`, `user_files`) are inputs of the
stages reading them in both front ends.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path


from medsr.core.config import classifier_domains
from medsr.core.errors import MedsrError
from medsr.core.parameters import ARCHITECTURES, CLASSIFIER_DOMAINS, DISTILLED_SAMPLERS, GUIDANCE_MODES



@dataclasses.dataclass(frozen=True)
class PathArg:
    name: str  # --name on the command line, keyword of run()
    help: str
    required: bool = True  # False: the option may be left out (run() then gets None)
    out: bool = False  # written by the stage (a DAG output); else read (a DAG input)
    fixed: str | None = None  # the path both front ends pass when it is neither (kept between runs)


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    help: str
    type: type = str
    choices: tuple[str, ...] | None = None
    key: str | None = None  # the Snakemake wildcard / DVC matrix key holding its value (default: name)

    @property
    def wildcard(self) -> str:
        return self.key or self.name


# File names of the per-(architecture, domain, seed) classifiers and their histories, inside the folders the DAG
# passes (the fields in this order: Snakemake names a job by its wildcards in it, DVC by its matrix keys).
CLASSIFIER_MODEL = "classifier_{arch}_{domain}_seed{seed}.safetensors"
CLASSIFIER_LOG = "classifier_{arch}_{domain}_seed{seed}.csv"
PREDICTIONS_SHARD = "seed{seed}.csv"  # classify's predictions by the classifiers of one train seed
SR_DOMAIN = "sr-{guidance}"  # the file-name domain of the classifier trained on SR images of one guidance mode
TRAINING_LOGS = ("sr_loss.csv", "regression_loss.csv")
SR_MODEL = "models/sr.safetensors"  # train-sr's diffusion model (the teacher of train-student)
DEPLOYED_PREDICTIONS = "results/deployed/predictions.csv"  # classify-deployed's output, evaluate's --deployed


def deployed_files(params) -> dict[str, str]:
    """evaluate's --deployed input when evaluate.deployed.file is set (both front ends then run classify-deployed,
    with the file as its --classifier), else nothing."""
    return {"deployed": DEPLOYED_PREDICTIONS} if params.evaluate.deployed.file else {}
# train-student's files by path argument: it runs only when generate samples a distilled student (generate_model)
STUDENT_FILES = {"teacher": SR_MODEL, "hr": "data/hr", "lr": "data/lr", "model": "models/student.safetensors",
                 "log": "results/train/student_loss.csv"}


def generate_model(params) -> str:
    """The model file generate samples: train-sr's diffusion model, or, for a distilled sampler
    (generate.sampler student), train-student's one-step student of it; both front ends take it from here."""
    return STUDENT_FILES["model"] if params.generate.sampler in DISTILLED_SAMPLERS else SR_MODEL


def file_domains(evaluate) -> list[str]:
    """The `domain` fields of the classifier file names: the run's classifier domains (`classifier_domains`),
    sr as sr-<mode> for the mode of evaluate.sr_classifier."""
    return [name for domain in classifier_domains(evaluate) for name in (
        [SR_DOMAIN.format(guidance=g) for g in evaluate.sr_classifier] if domain == "sr" else [domain])]


def classifier_files(folder: Path, params, seed: int | None = None) -> list[Path]:
    """Every classifier a run trains: train_classifier.architectures x its file domains (`file_domains`)
    x evaluate.train_seeds (only `seed`'s when given: what one seed's classify reads)."""
    seeds = params.evaluate.train_seeds if seed is None else [seed]
    return [Path(folder) / CLASSIFIER_MODEL.format(arch=a, domain=d, seed=s)
            for a in params.train_classifier.architectures for d in file_domains(params.evaluate) for s in seeds]


def prediction_files(folder: Path, params) -> list[Path]:
    """classify's per-train-seed prediction CSVs (PREDICTIONS_SHARD), in evaluate.train_seeds order."""
    return [Path(folder) / PREDICTIONS_SHARD.format(seed=s) for s in params.evaluate.train_seeds]


def training_logs(folder: Path, params) -> list[Path]:
    """The loss CSVs a run writes: the SR model's, the regression model's, the one-step student's when generate
    samples one (`generate_model`), and every classifier's history."""
    student = [Path(STUDENT_FILES["log"]).name] if generate_model(params) == STUDENT_FILES["model"] else []
    return [Path(folder) / name for name in (*TRAINING_LOGS, *student)] + [
        Path(folder) / CLASSIFIER_LOG.format(arch=a, domain=d, seed=s) for a in params.train_classifier.architectures
        for d in file_domains(params.evaluate) for s in params.evaluate.train_seeds]


@dataclasses.dataclass(frozen=True)
class UserPaths:
    """Paths a user brings to a run, named in params.yaml rather than written by a stage: DAG inputs, by content, of
    the stages that read them (Snakemake lists the files in them, DVC hashes them; `user_files`)."""
    key: str  # dotted params.yaml key: a mapping {name: path} (each entry is one path) or one path ("": none)
    kind: str  # "folder" | "file": what each path must be
    stages: tuple[str, ...]  # the commands that read them


USER_PATHS: tuple[UserPaths, ...] = (
    UserPaths("evaluate.external", "folder", ("classify", "classify-deployed", "evaluate")),  # your own SR: <id>.png
)


def _user_paths(params, command: str | None) -> list[tuple[str, Path, UserPaths]]:
    """(params.yaml key, path as given, its USER_PATHS row) of every user-brought path (of `command`'s stages)."""
    found = []
    for user in USER_PATHS:
        if command is not None and command not in user.stages:
            continue
        value = params
        for part in user.key.split("."):
            value = getattr(value, part)
        entries = value.items() if isinstance(value, Mapping) else [(None, value)]
        found += [(user.key if name is None else f"{user.key}.{name}", Path(path), user)
                  for name, path in entries if path]
    return found


def user_files(params, command: str | None = None) -> dict[str, Path]:
    """The paths a user brings to a run (`USER_PATHS`) by the params.yaml key naming each (a mapping's entry:
    `evaluate.external.<name>`), as given (relative to the working folder, or absolute); only those `command` reads
    when given."""
    return {key: path for key, path, _ in _user_paths(params, command)}


def check_user_files(params, root: Path | str = ".") -> None:
    """A MedsrError naming the first user-brought path (`user_files`) that is missing or not of its kind; a relative
    path is looked up under `root` (the folder the stages run in)."""
    for key, path, user in _user_paths(params, None):
        found = Path(root) / path  # `path` itself when absolute
        if not (found.is_dir() if user.kind == "folder" else found.is_file()):
            raise MedsrError(f"{path}: {key}: {user.kind} is missing" if not found.exists() else
                             f"{path}: {key}: not a {user.kind}")


def user_input_files(params, command: str) -> list[str]:
    """The files behind the user-brought paths `command` reads (`user_files`): every file inside a folder, at any
    depth, sorted; a file itself. What a Snakemake rule lists as inputs, so that a changed file reruns the stage
    (Snakemake compares the checksums of small files) and an added or removed one too (its set of inputs)."""
    check_user_files(params)
    files: list[str] = []
    for path in user_files(params, command).values():
        files += sorted(str(f) for f in path.rglob("*") if f.is_file()) if path.is_dir() else [str(path)]
    return files


@dataclasses.dataclass(frozen=True)
class Stage:
    command: str  # `medsr <command>`; the Snakemake rule / DVC stage name is command with _ for -
    help: str
    sections: tuple[str, ...] = ()  # params.yaml sections passed to run() positionally, in this order
    params: tuple[str, ...] = ()  # the params.yaml keys whose change reruns the stage (Snakemake's and DVC's)
    paths: tuple[PathArg, ...] = ()
    options: tuple[Option, ...] = ()
    device: bool = False  # takes --device (torch stages)
    image_sets: bool = False  # --hr/--bicubic/--regression/--sr become `sets` (medsr.data.image_sets.build)
    # (path name, f(folder, params, **options) -> the files it stands for)
    expand: tuple[tuple[str, typing.Callable], ...] = ()

    @property
    def rule(self) -> str:
        return self.command.replace("-", "_")

    @property
    def module(self) -> str:
        """medsr.<module>.run is the stage function: the stage's own module in this package."""
        return f"stages.{self.rule}"


# The image-set roots classify and evaluate take (turned into ImageSet objects by the CLI).
IMAGE_SET_PATHS = (
    PathArg("hr", "HR image set (the reference)"),
    PathArg("bicubic", "bicubic-upsampled LR set (the no-SR baseline)"),
    PathArg("regression", "regression SR set (does diffusion matter?)"),
    PathArg("sr", "diffusion SR sets: <sr>/<guidance>/seed<seed> for generate.guidance x evaluate.sampling_seeds"),
)

STAGES: tuple[Stage, ...] = (
    Stage("download", "build or fetch the labeled HR dataset (data.source), with train/val/test",
          params=("data",),
          sections=("data",),
          paths=(PathArg("out", "dataset folder to write: <out>/{train,val,test}/{healthy,unhealthy}/*.png "
                                "+ manifest.csv", out=True),)),
    Stage("degrade", "LR images by Eq. 1.1 and their bicubic upsampling", params=("degrade",),
          sections=("degrade",),
          paths=(PathArg("hr", "HR dataset folder (from download)"), PathArg("lr", "LR folder to write", out=True),
                 PathArg("bicubic", "bicubic-upsampled LR folder to write", out=True))),
    Stage("train-sr", "train the class-guided diffusion SR model",
          params=("sr_model", "diffusion", "train_sr"),
          sections=("sr_model", "diffusion", "train_sr"), device=True,
          paths=(PathArg("hr", "HR dataset folder"), PathArg("lr", "LR folder"),
                 PathArg("model", "safetensors file to write (EMA weights + config)", out=True),
                 PathArg("log", "loss log CSV to write", out=True),
                 PathArg("checkpoints", "folder of resumable checkpoints (kept between runs)",
                         fixed="checkpoints/train_sr"))),
    Stage("train-regression", "train the one-pass L1 regression SR baseline",
          params=("sr_model", "train_regression"),
          sections=("sr_model", "train_regression"), device=True,
          paths=(PathArg("hr", "HR dataset folder"), PathArg("lr", "LR folder"),
                 PathArg("model", "safetensors file to write", out=True),
                 PathArg("log", "loss log CSV to write", out=True))),
    Stage("train-student", "distil the resshift teacher into a one-step student (SinSR); the DAG "
          "runs it only for generate.sampler student",
          params=("train_student",), sections=("train_student",), device=True,
          paths=(PathArg("teacher", "the resshift teacher (from train-sr)"),
                 PathArg("hr", "HR dataset folder (train split; val for the val criterion)"),
                 PathArg("lr", "LR folder"),
                 PathArg("model", "safetensors file to write (the best EMA weights on val)", out=True),
                 PathArg("log", "loss and val log CSV to write", out=True),
                 PathArg("checkpoints", "folder of resumable checkpoints (kept between runs)",
                         fixed="checkpoints/train_student"))),
    Stage("train-classifier", "train one classifier family on one kind of images",
          params=("train_classifier",),
          sections=("train_classifier",), device=True,
          paths=(PathArg("images", "image set to train on (its train split; the best epoch is chosen on val, where "
                                   "early stopping watches train_classifier.monitor)"),
                 PathArg("model", "safetensors file to write", out=True),
                 PathArg("log", "per-epoch history CSV to write", out=True),
                 PathArg("init", "classifier to fine-tune (the same family and seed trained on HR images: the DAG "
                                 "gives it to every classifier of another domain); left out: from scratch",
                         required=False)),
          options=(Option("architecture", "the classifier family (one of train_classifier.architectures)",
                          choices=ARCHITECTURES, key="arch"),
                   Option("domain", "the kind of images: hr, bicubic or sr (SR images)", choices=CLASSIFIER_DOMAINS),
                   Option("seed", "training seed (one of evaluate.train_seeds)", int))),
    Stage("generate", "super-resolve one shard of the val and test LR images with the diffusion model",
          params=("generate.sampler", "generate.steps", "generate.eta", "generate.guidance_scale",
                  "generate.batch_size", "generate.shards", "generate.precision", "evaluate.sr_classifier",
                  "evaluate.sampling_seeds"),
          sections=("generate", "evaluate"), device=True,
          paths=(PathArg("model", "SR model (from train-sr; train-student's for a distilled sampler)"),
                 PathArg("lr", "LR folder"),
                 PathArg("guide", "resnet18 classifier trained on bicubic images, first train seed (used by "
                                  "predicted guidance)"),
                 PathArg("bicubic", "bicubic folder (the guide classifier's input)"),
                 PathArg("out", "shard folder to write", out=True)),
          options=(Option("guidance", "guidance mode", choices=GUIDANCE_MODES),
                   Option("seed", "sampling seed", int), Option("shard", "shard id in generate.shards", int))),
    Stage("gather", "gather generation shards into one image set", params=("generate.shards",),
          sections=("generate",),
          paths=(PathArg("shards", "folder holding shard<k> for every k in generate.shards"),
                 PathArg("out", "image set folder to write", out=True))),
    Stage("regress", "super-resolve the val and test LR images with the regression baseline",
          params=("generate.batch_size",),
          sections=("generate",), device=True,
          paths=(PathArg("model", "regression model (from train-regression)"), PathArg("lr", "LR folder"),
                 PathArg("out", "image set folder to write", out=True))),
    Stage("classify", "classify the val and test images of every image set with the HR classifiers and "
          "with those trained on its own kind, of one train seed",
          params=("classify", "train_classifier.architectures", "generate.guidance", "evaluate.sampling_seeds",
                  "evaluate.train_seeds", "evaluate.external", "evaluate.sr_classifier"),
          sections=("classify",), device=True, image_sets=True,
          paths=(PathArg("models", "folder of the classifiers (from train-classifier): one per architecture, "
                                   "domain and evaluate.train_seeds"), *IMAGE_SET_PATHS,
                 PathArg("out", "predictions CSV of that seed's classifiers to write", out=True)),
          options=(Option("seed", "train seed: the classifiers of this seed (one of evaluate.train_seeds)", int),),
          expand=(("models", classifier_files),)),
    Stage("classify-deployed", "classify the val and test images of every image set with the "
          "user's own classifier (evaluate.deployed); the DAG runs it only when evaluate.deployed.file is set",
          params=("classify", "evaluate.deployed", "generate.guidance", "evaluate.sampling_seeds",
                  "evaluate.external"),
          sections=("classify", "evaluate"), device=True, image_sets=True,
          paths=(PathArg("classifier", "the deployed classifier (evaluate.deployed.file: .safetensors or .pt2)"),
                 *IMAGE_SET_PATHS,
                 PathArg("out", "predictions CSV to write", out=True))),
    Stage("merge-predictions", "join classify's per-seed predictions into one CSV",
          params=("evaluate.train_seeds",),
          paths=(PathArg("predictions", "folder holding classify's seed<s>.csv for every seed of "
                                        "evaluate.train_seeds"),
                 PathArg("out", "predictions CSV to write", out=True)),
          expand=(("predictions", prediction_files),)),
    Stage("evaluate", "the learning gate, then verdicts with paired tests and intervals, "
          "image quality, figures",
          params=("evaluate", "train_classifier.architectures", "generate.guidance"),
          sections=("evaluate", "train_classifier"), image_sets=True,
          paths=(PathArg("predictions", "predictions CSV (from classify)"), *IMAGE_SET_PATHS,
                 PathArg("lr", "LR folder (for figures)"),
                 PathArg("logs", "folder of the training logs (loss curves; the classifiers' histories tell the "
                                 "learning gate whether they converged)"),
                 PathArg("metrics", "headline metrics JSON to write (DVC metrics)", out=True),
                 PathArg("results", "full results JSON to write", out=True),
                 PathArg("figures", "figures folder to write", out=True),
                 PathArg("plots", "DVC plot data folder to write", out=True),
                 PathArg("deployed", "the deployed classifier's predictions CSV (from classify-deployed; given "
                                     "exactly when evaluate.deployed.file is set)", required=False)),
          expand=(("logs", training_logs),)),
)

BY_COMMAND = {stage.command: stage for stage in STAGES}
# Rules (Snakemake) and stages (DVC) by name: one per command, plus the classifiers fine-tuned from the HR one on
# bicubic images and on SR images, which run `medsr train-classifier` with --init on other folders.
BY_RULE = {stage.rule: stage for stage in STAGES} | {rule: BY_COMMAND["train-classifier"] for rule in
                                                     ("finetune_classifier", "train_sr_classifier")}
RULE_OPTIONS = {"train_sr_classifier": {"domain": "sr"}}  # options a rule fixes (not a wildcard / matrix key)
# Each rule's log file (`--log-file`; Snakemake's log:), with its wildcards / matrix keys in braces.
LOGS = {rule: f"logs/{rule}.log" for rule in BY_RULE} | {
    "train_classifier": "logs/train_classifier/{arch}-{domain}-seed{seed}.log",
    "finetune_classifier": "logs/train_classifier/{arch}-{domain}-seed{seed}.log",
    "train_sr_classifier": "logs/train_classifier/{arch}-sr-{guidance}-seed{seed}.log",
    "generate": "logs/generate/{guidance}-seed{seed}-shard{shard}.log",
    "classify": "logs/classify/seed{seed}.log",
    "gather": "logs/gather/{guidance}-seed{seed}.log",
}


def command(rule: str, values: typing.Mapping[str, object], params_args: str, log: str) -> str:
    """The `medsr` command line of a job of `rule`: its stage's paths, then its options, then the optional paths
    it passes, in the table's order, each `--<name> <value>`, between the parameter files and `--log-file <log>`.

    `values` holds each path's and option's value by name; a `fixed` path and a rule's RULE_OPTIONS take the
    table's value, and an optional path absent from `values` is not passed.
    """
    stage = BY_RULE[rule]
    values = {**{a.name: a.fixed for a in stage.paths if a.fixed}, **values, **RULE_OPTIONS.get(rule, {})}
    names = ([a.name for a in stage.paths if a.required] + [o.name for o in stage.options]
             + [a.name for a in stage.paths if not a.required and values.get(a.name) is not None])
    missing = [name for name in names if values.get(name) is None]
    if missing:
        raise KeyError(f"{rule}: no value for --{missing[0]}")
    words = [f"--{name} {values[name]}" for name in names]
    return " ".join(["medsr", stage.command, params_args, *words, "--log-file", log])
