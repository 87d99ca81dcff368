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
from pathlib import Path


from medsr.core.config import classifier_domains
from medsr.core.parameters import (ARCHITECTURES, CLASSIFIER_DOMAINS, DISTILLED_SAMPLERS, GUIDANCE_MODES,
                                   GUIDE_ARCHITECTURE)
from medsr.data.image_sets import shard_folders, sr_folder



@dataclasses.dataclass(frozen=True)
class PathArg:
    name: str  # --name on the command line, keyword of run()
    help: str
    path: str = ""  # where the DAG keeps it: {key} a wildcard / matrix key, {section.key[0]} a params value
    required: bool = True  # False: the option may be left out (run() then gets None)
    out: bool = False  # written by the stage (a DAG output); else read (a DAG input)
    fixed: str | None = None  # the path both front ends pass when it is neither (kept between runs)
    folder: bool = False  # a folder the stage writes (Snakemake's directory())
    files: typing.Callable | None = None  # f(path, params) -> the files a read folder stands for (Snakemake's inputs)
    given: typing.Callable | None = None  # f(params) -> the path when the params choose it (None: not passed)
    dvc: str = "outs"  # the dvc.yaml list a written path goes in: outs, metrics or plots
    plot: typing.Mapping | None = None  # a written CSV's plot: dvc.yaml's x, y (title: one of dvc.yaml's top plots)
    report: typing.Mapping | None = None  # Snakemake's report(): caption, category (, patterns)

    def on(self, **changes) -> PathArg:
        return dataclasses.replace(self, **changes)


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
# The files and folders the stages pass each other, each named once (the rows below use them).
HR, LR, BICUBIC = "data/hr", "data/lr", "data/bicubic"
SR_MODEL = "models/sr.safetensors"  # train-sr's diffusion model (the teacher of train-student)
STUDENT_MODEL = "models/student.safetensors"  # train-student's one-step student of it
REGRESSION_MODEL = "models/regression.safetensors"
CLASSIFIERS = "models/classifiers"  # every CLASSIFIER_MODEL
TRAIN_LOGS = "results/train"  # the TRAINING_LOGS, the student's and every CLASSIFIER_LOG
STUDENT_LOG = f"{TRAIN_LOGS}/student_loss.csv"
REGRESSION_SET = "results/regression"
SR_SETS = "results/sr/eval"  # <guidance>/seed<seed> inside (medsr.data.image_sets.sr_folder)
SR_SHARDS = "results/sr/shards/{guidance}/seed{seed}"  # shard<k> inside (medsr.data.image_sets.shard_folders)
PREDICTIONS = "results/predictions"  # classify's PREDICTIONS_SHARD files
PREDICTIONS_CSV = "results/predictions.csv"  # merge-predictions' join of them
DEPLOYED_PREDICTIONS = "results/deployed/predictions.csv"  # classify-deployed's output, evaluate's --deployed
# the HR classifier of a job's {arch} and {seed}: where every classifier of another domain starts (fine-tuning)
HR_CLASSIFIER = f"{CLASSIFIERS}/{CLASSIFIER_MODEL.format(arch='{arch}', domain='hr', seed='{seed}')}"
# predicted guidance's classifier: resnet18 (GUIDE_ARCHITECTURE) on bicubic images, first train seed
GUIDE = f"{CLASSIFIERS}/" + CLASSIFIER_MODEL.format(arch=GUIDE_ARCHITECTURE, domain="bicubic",
                                                    seed="{evaluate.train_seeds[0]}")
TORCH_THREADS = 8  # threads of a torch stage (Snakemake's threads:, capped at --cores; SLURM: set-threads)


def deployed_file(params) -> str | None:
    """evaluate's --deployed input when evaluate.deployed.file is set (both front ends then run classify-deployed,
    with the file as its --classifier), else None."""
    return DEPLOYED_PREDICTIONS if params.evaluate.deployed.file else None


def generate_model(params) -> str:
    """The model file generate samples: train-sr's diffusion model, or, for a distilled sampler
    (generate.sampler student), train-student's one-step student of it; both front ends take it from here."""
    return STUDENT_MODEL if params.generate.sampler in DISTILLED_SAMPLERS else SR_MODEL


def sr_set_folders(folder: Path | str, params) -> list[Path]:
    """The diffusion SR sets under `folder`: one per generate.guidance x evaluate.sampling_seeds."""
    return [sr_folder(folder, g, s) for g in params.generate.guidance for s in params.evaluate.sampling_seeds]


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
    student = [Path(STUDENT_LOG).name] if generate_model(params) == STUDENT_MODEL else []
    return [Path(folder) / name for name in (*TRAINING_LOGS, *student)] + [
        Path(folder) / CLASSIFIER_LOG.format(arch=a, domain=d, seed=s) for a in params.train_classifier.architectures
        for d in file_domains(params.evaluate) for s in params.evaluate.train_seeds]


@dataclasses.dataclass(frozen=True)
class Rule:
    """A rule (Snakemake) / stage (DVC) running a stage's command: a stage's own, or one more running it on other
    files (`Stage.rules`): `paths` replaces the path of each named argument, `matrix` the stage's, `options` fixes
    options (not a wildcard / matrix key)."""
    name: str
    paths: typing.Mapping[str, str] = dataclasses.field(default_factory=dict)
    matrix: typing.Mapping[str, str | tuple] = dataclasses.field(default_factory=dict)
    options: typing.Mapping[str, str] = dataclasses.field(default_factory=dict)


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
    # a job per value of each key (DVC's matrix, Snakemake's wildcards): a params list, or fixed values
    matrix: typing.Mapping[str, str | tuple] = dataclasses.field(default_factory=dict)
    rules: tuple[Rule, ...] = ()  # more rules running this command
    when: typing.Callable | None = None  # f(params) -> whether the DAG has this stage (None: always)
    target: bool = False  # its outputs are what the DAG is run for (Snakemake's `all`)
    threads: int = 1
    gpu_mem_mb: int = 0  # > 0: a GPU job, with its GPU memory estimate (medsr.tools.snakemake_rules)
    priority: int = 0  # Snakemake's: among ready jobs the longest chain goes first
    local: bool = False  # light bookkeeping: on the submitting host under a cluster executor

    @property
    def rule(self) -> str:
        return self.command.replace("-", "_")

    @property
    def module(self) -> str:
        """medsr.<module>.run is the stage function: the stage's own module in this package."""
        return f"stages.{self.rule}"


# The image-set roots classify and evaluate take (turned into ImageSet objects by the CLI).
IMAGE_SET_PATHS = (
    PathArg("hr", "HR image set (the reference)", HR),
    PathArg("bicubic", "bicubic-upsampled LR set (the no-SR baseline)", BICUBIC),
    PathArg("regression", "regression SR set (does diffusion matter?)", REGRESSION_SET),
    PathArg("sr", "diffusion SR sets: <sr>/<guidance>/seed<seed> for generate.guidance x evaluate.sampling_seeds",
            SR_SETS, files=sr_set_folders),
)
TRAIN_SEEDS, SAMPLING_SEEDS = "evaluate.train_seeds", "evaluate.sampling_seeds"  # params lists a matrix runs over

STAGES: tuple[Stage, ...] = (
    Stage("download", "build or fetch the labeled HR dataset (data.source), with train/val/test",
          params=("data",),
          sections=("data",),
          paths=(PathArg("out", "dataset folder to write: <out>/{train,val,test}/{healthy,unhealthy}/*.png "
                                "+ manifest.csv", HR, out=True, folder=True),)),
    Stage("degrade", "LR images by Eq. 1.1 and their bicubic upsampling", params=("degrade",),
          sections=("degrade",), priority=3,
          paths=(PathArg("hr", "HR dataset folder (from download)", HR),
                 PathArg("lr", "LR folder to write", LR, out=True, folder=True),
                 PathArg("bicubic", "bicubic-upsampled LR folder to write", BICUBIC, out=True, folder=True))),
    Stage("train-sr", "train the class-guided diffusion SR model",
          params=("sr_model", "diffusion", "train_sr"),
          sections=("sr_model", "diffusion", "train_sr"), device=True,
          threads=TORCH_THREADS, gpu_mem_mb=48000, priority=2,
          paths=(PathArg("hr", "HR dataset folder", HR), PathArg("lr", "LR folder", LR),
                 PathArg("model", "safetensors file to write (EMA weights + config)", SR_MODEL, out=True),
                 PathArg("log", "loss log CSV to write", f"{TRAIN_LOGS}/{TRAINING_LOGS[0]}", out=True,
                         plot={"title": "SR training loss (MSE of the diffusion model's prediction, the noise for "
                                        "ddpm or x_0 for resshift)", "x": "step", "y": "loss"}),
                 PathArg("checkpoints", "folder of resumable checkpoints (kept between runs)",
                         fixed="checkpoints/train_sr"))),
    Stage("train-regression", "train the one-pass L1 regression SR baseline",
          params=("sr_model", "train_regression"),
          sections=("sr_model", "train_regression"), device=True, threads=TORCH_THREADS, gpu_mem_mb=12000,
          paths=(PathArg("hr", "HR dataset folder", HR), PathArg("lr", "LR folder", LR),
                 PathArg("model", "safetensors file to write", REGRESSION_MODEL, out=True),
                 PathArg("log", "loss log CSV to write", f"{TRAIN_LOGS}/{TRAINING_LOGS[1]}", out=True,
                         plot={"title": "Regression baseline training loss (L1)", "x": "step", "y": "loss"}))),
    Stage("train-student", "distil the resshift teacher into a one-step student (SinSR); the DAG "
          "runs it only for generate.sampler student",
          params=("train_student",), sections=("train_student",), device=True,
          threads=TORCH_THREADS, gpu_mem_mb=48000, priority=2, when=lambda p: generate_model(p) == STUDENT_MODEL,
          paths=(PathArg("teacher", "the resshift teacher (from train-sr)", SR_MODEL),
                 PathArg("hr", "HR dataset folder (train split; val for the val criterion)", HR),
                 PathArg("lr", "LR folder", LR),
                 PathArg("model", "safetensors file to write (the best EMA weights on val)", STUDENT_MODEL, out=True),
                 PathArg("log", "loss and val log CSV to write", STUDENT_LOG, out=True),
                 PathArg("checkpoints", "folder of resumable checkpoints (kept between runs)",
                         fixed="checkpoints/train_student"))),
    # One classifier per architecture, image domain and training seed: from scratch on data/hr; fine-tuned from that
    # HR classifier on data/bicubic (the matched-domain baseline) and, with evaluate.sr_classifier, on the SR images
    # of the train split made with that guidance mode.
    Stage("train-classifier", "train one classifier family on one kind of images",
          params=("train_classifier",),
          sections=("train_classifier",), device=True, threads=TORCH_THREADS, gpu_mem_mb=10000,
          paths=(PathArg("images", "image set to train on (its train split; the best epoch is chosen on val, where "
                                   "early stopping watches train_classifier.monitor)", "data/{domain}"),
                 PathArg("model", "safetensors file to write", f"{CLASSIFIERS}/{CLASSIFIER_MODEL}", out=True),
                 PathArg("log", "per-epoch history CSV to write", f"{TRAIN_LOGS}/{CLASSIFIER_LOG}", out=True,
                         dvc="plots", plot={"x": "epoch", "y": "val_loss"}),
                 PathArg("init", "classifier to fine-tune (the same family and seed trained on HR images: the DAG "
                                 "gives it to every classifier of another domain); left out: from scratch",
                         required=False)),
          options=(Option("architecture", "the classifier family (one of train_classifier.architectures)",
                          choices=ARCHITECTURES, key="arch"),
                   Option("domain", "the kind of images: hr, bicubic or sr (SR images)", choices=CLASSIFIER_DOMAINS),
                   Option("seed", "training seed (one of evaluate.train_seeds)", int)),
          matrix={"arch": "train_classifier.architectures", "domain": ("hr",), "seed": TRAIN_SEEDS},
          rules=(Rule("finetune_classifier", {"init": HR_CLASSIFIER},
                      {"arch": "train_classifier.architectures", "domain": ("bicubic",), "seed": TRAIN_SEEDS}),
                 Rule("train_sr_classifier",
                      {"images": str(sr_folder(SR_SETS, "{guidance}", f"{{{SAMPLING_SEEDS}[0]}}")),
                       "init": HR_CLASSIFIER,
                       "model": f"{CLASSIFIERS}/" + CLASSIFIER_MODEL.format(arch="{arch}", domain=SR_DOMAIN,
                                                                            seed="{seed}"),
                       "log": f"{TRAIN_LOGS}/{CLASSIFIER_LOG.format(arch='{arch}', domain=SR_DOMAIN, seed='{seed}')}"},
                      {"arch": "train_classifier.architectures", "guidance": "evaluate.sr_classifier",
                       "seed": TRAIN_SEEDS}, {"domain": "sr"}))),
    Stage("generate", "super-resolve one shard of the val and test LR images with the diffusion model",
          params=("generate.sampler", "generate.steps", "generate.eta", "generate.guidance_scale",
                  "generate.batch_size", "generate.shards", "generate.precision", "evaluate.sr_classifier",
                  "evaluate.sampling_seeds"),
          sections=("generate", "evaluate"), device=True, threads=TORCH_THREADS, gpu_mem_mb=6000, priority=1,
          paths=(PathArg("model", "SR model (from train-sr; train-student's for a distilled sampler)",
                         given=generate_model),
                 PathArg("lr", "LR folder", LR),
                 PathArg("guide", "resnet18 classifier trained on bicubic images, first train seed (used by "
                                  "predicted guidance)", GUIDE),
                 PathArg("bicubic", "bicubic folder (the guide classifier's input)", BICUBIC),
                 PathArg("out", "shard folder to write", f"{SR_SHARDS}/shard{{shard}}", out=True, folder=True)),
          options=(Option("guidance", "guidance mode", choices=GUIDANCE_MODES),
                   Option("seed", "sampling seed", int), Option("shard", "shard id in generate.shards", int)),
          matrix={"guidance": "generate.guidance", "seed": SAMPLING_SEEDS, "shard": "generate.shards"}),
    Stage("gather", "gather generation shards into one image set", params=("generate.shards",),
          sections=("generate",), local=True,
          paths=(PathArg("shards", "folder holding shard<k> for every k in generate.shards", SR_SHARDS,
                         files=lambda folder, params: shard_folders(params.generate, folder)),
                 PathArg("out", "image set folder to write", str(sr_folder(SR_SETS, "{guidance}", "{seed}")),
                         out=True, folder=True)),
          matrix={"guidance": "generate.guidance", "seed": SAMPLING_SEEDS}),
    Stage("regress", "super-resolve the val and test LR images with the regression baseline",
          params=("generate.batch_size",),
          sections=("generate",), device=True, threads=TORCH_THREADS, gpu_mem_mb=4000,
          paths=(PathArg("model", "regression model (from train-regression)", REGRESSION_MODEL),
                 PathArg("lr", "LR folder", LR),
                 PathArg("out", "image set folder to write", REGRESSION_SET, out=True, folder=True))),
    Stage("classify", "classify the val and test images of every image set with the HR classifiers and "
          "with those trained on its own kind, of one train seed",
          params=("classify", "train_classifier.architectures", "generate.guidance", "evaluate.sampling_seeds",
                  "evaluate.train_seeds", "evaluate.external", "evaluate.sr_classifier"),
          sections=("classify",), device=True, image_sets=True, threads=TORCH_THREADS,
          # a classify job reads its seed's classifiers but depends on all of them (DVC: on their folder)
          paths=(PathArg("models", "folder of the classifiers (from train-classifier): one per architecture, "
                                   "domain and evaluate.train_seeds", CLASSIFIERS, files=classifier_files),
                 *IMAGE_SET_PATHS,
                 PathArg("out", "predictions CSV of that seed's classifiers to write",
                         f"{PREDICTIONS}/{PREDICTIONS_SHARD}", out=True)),
          options=(Option("seed", "train seed: the classifiers of this seed (one of evaluate.train_seeds)", int),),
          expand=(("models", classifier_files),), matrix={"seed": TRAIN_SEEDS}),
    Stage("classify-deployed", "classify the val and test images of every image set with the "
          "user's own classifier (evaluate.deployed); the DAG runs it only when evaluate.deployed.file is set",
          params=("classify", "evaluate.deployed", "generate.guidance", "evaluate.sampling_seeds",
                  "evaluate.external"),
          sections=("classify", "evaluate"), device=True, image_sets=True, threads=TORCH_THREADS,
          when=lambda p: bool(p.evaluate.deployed.file),
          paths=(PathArg("classifier", "the deployed classifier (evaluate.deployed.file: .safetensors or .pt2)",
                         given=lambda p: p.evaluate.deployed.file),
                 *IMAGE_SET_PATHS,
                 PathArg("out", "predictions CSV to write", DEPLOYED_PREDICTIONS, out=True))),
    Stage("merge-predictions", "join classify's per-seed predictions into one CSV",
          params=("evaluate.train_seeds",), local=True,
          paths=(PathArg("predictions", "folder holding classify's seed<s>.csv for every seed of "
                                        "evaluate.train_seeds", PREDICTIONS, files=prediction_files),
                 PathArg("out", "predictions CSV to write", PREDICTIONS_CSV, out=True)),
          expand=(("predictions", prediction_files),)),
    Stage("evaluate", "the learning gate, then verdicts with paired tests and intervals, "
          "image quality, figures",
          params=("evaluate", "train_classifier.architectures", "generate.guidance"),
          sections=("evaluate", "train_classifier"), image_sets=True, threads=TORCH_THREADS, target=True,
          paths=(PathArg("predictions", "predictions CSV (from classify)", PREDICTIONS_CSV), *IMAGE_SET_PATHS,
                 PathArg("lr", "LR folder (for figures)", LR),
                 PathArg("logs", "folder of the training logs (loss curves; the classifiers' histories tell the "
                                 "learning gate whether they converged)", TRAIN_LOGS, files=training_logs),
                 PathArg("metrics", "headline metrics JSON to write (DVC metrics)", "results/metrics.json", out=True,
                         dvc="metrics", report={"caption": "../report/metrics.rst", "category": "Metrics"}),
                 PathArg("results", "full results JSON to write", "results/evaluation.json", out=True),
                 PathArg("figures", "figures folder to write", "results/figures", out=True, folder=True,
                         report={"patterns": ["{name}.png"], "caption": "../report/figures.rst",
                                 "category": "Figures"}),
                 PathArg("plots", "DVC plot data folder to write", "results/plots", out=True, folder=True),
                 PathArg("deployed", "the deployed classifier's predictions CSV (from classify-deployed; given "
                                     "exactly when evaluate.deployed.file is set)", required=False,
                         given=deployed_file)),
          expand=(("logs", training_logs),)),
)

BY_COMMAND = {stage.command: stage for stage in STAGES}
# Rules (Snakemake) and stages (DVC) by name: one per command, plus each stage's further `rules` (the classifiers
# fine-tuned from the HR one on bicubic images and on SR images run `medsr train-classifier` on other folders).
RULES = {rule.name: rule for stage in STAGES for rule in (Rule(stage.rule, matrix=stage.matrix), *stage.rules)}
BY_RULE = {rule.name: stage for stage in STAGES for rule in (Rule(stage.rule), *stage.rules)}
RULE_OPTIONS = {name: rule.options for name, rule in RULES.items() if rule.options}  # options a rule fixes
# Each rule's log file (`--log-file`; Snakemake's log:), with its wildcards / matrix keys in braces.
LOGS = {rule: f"logs/{rule}.log" for rule in BY_RULE} | {
    "train_classifier": "logs/train_classifier/{arch}-{domain}-seed{seed}.log",
    "finetune_classifier": "logs/train_classifier/{arch}-{domain}-seed{seed}.log",
    "train_sr_classifier": "logs/train_classifier/{arch}-sr-{guidance}-seed{seed}.log",
    "generate": "logs/generate/{guidance}-seed{seed}-shard{shard}.log",
    "classify": "logs/classify/seed{seed}.log",
    "gather": "logs/gather/{guidance}-seed{seed}.log",
}


def rule_paths(rule: str) -> dict[str, PathArg]:
    """The path arguments of `rule` by name, each with the path this rule gives it (its stage's, or the rule's)."""
    stage, own = BY_RULE[rule], RULES[rule].paths
    return {a.name: a.on(path=own[a.name]) if a.name in own else a for a in stage.paths}


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
