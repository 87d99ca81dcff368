"""Distil the resshift teacher into a one-step student (`medsr train-student`; SinSR, Wang et al. 2024).

The student is the teacher's U-Net, initialised from the teacher's (EMA) weights, trained on aligned random crops of
the TRAIN split with SinSR's losses (`medsr.diffusion.distill`): each batch draws x_T = y_0 + kappa sqrt(eta_T) eps,
runs the frozen teacher's deterministic sampler (train_student.teacher_steps calls) for its target, and takes one
Adam step on L_distill + w L_inverse + lambda L_gt. The null class replaces the label for train_student.null_class_prob
of the samples (as train_sr), the teacher sees the same labels.

Val criterion: every `eval_every` steps (and at step 0, the teacher's weights as they are) the EMA student's one-step
output on `val_images` val images (full size, fixed noise per image id) is compared with the teacher's deterministic
output for the same x_T; the evaluation with the lowest MSE is the one saved. (Not the MSE to HR: the posterior mean,
a blur, minimises that; the teacher's sample keeps the texture the classifier reads.) Val PSNR to HR is logged beside.

Resumable checkpoints (keyed on the parameters, the teacher file and the data); a non-finite loss or non-finite
weights stop the stage with no model written; the model file is written atomically.
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from medsr.core import io, training
from medsr.core.model_files import load_training_state, save_model, save_training_state
from medsr.core.config import to_jsonable
from medsr.core.parameters import CLASSES, NULL_CLASS, TrainStudentParams
from medsr.core.device import deterministic_mode
from medsr.diffusion.distill import StudentBatch, make_batch, sinsr_losses
from medsr.diffusion.ema import EMA
from medsr.diffusion.unet import STUDENT_KEY, LoadedUNet, load_unet
from medsr.diffusion.resshift import ResShiftSchedule
from medsr.diffusion.samplers import SamplerSpec, StudentSampler, make_sampler
from medsr.diffusion.schedule import encode_target
from medsr.core.errors import MedsrError
from medsr.core.randomness import derived_seed, torch_generator

STATE_FILE = "train_student_state.pt"
RESUME_INDEPENDENT = ("steps",)  # raising `steps` resumes a finished run
LOG_FIELDS = ("step", "loss", "distill", "inverse", "gt", "val_mse_to_teacher", "val_psnr", "learning_rate")


def load_teacher(path: Path, device: torch.device) -> LoadedUNet:
    teacher = load_unet(path, "sr_diffusion", device)
    if not isinstance(teacher.schedule, ResShiftSchedule):
        raise MedsrError(f"{path}: a diffusion.process {teacher.process} model; train-student distils a resshift "
                         f"teacher")
    if STUDENT_KEY in teacher.metadata:
        raise MedsrError(f"{path}: is itself a distilled student; give the resshift teacher (train-sr's model)")
    return teacher


@dataclass(frozen=True)
class ValSet:
    """The val criterion's images: bicubic input, HR, labels (null), fixed noise and the teacher's outputs."""

    ids: list[str]
    bicubic: torch.Tensor
    hr: torch.Tensor
    teacher_x0: torch.Tensor
    seed: int

    def generators(self) -> list[torch.Generator]:
        return [torch_generator(self.seed, f"student-val:{i}") for i in self.ids]


def val_set(teacher: LoadedUNet, hr: Path, lr: Path, params: TrainStudentParams, device: torch.device) -> ValSet:
    data = training.load_pairs(hr, lr, "val")
    chosen = []
    for label in range(len(CLASSES)):
        chosen += [i for i in range(len(data.ids)) if int(data.labels[i]) == label][: params.val_images // 2]
    if len(chosen) < 2:
        raise MedsrError(f"{Path(hr) / io.MANIFEST}: no val images for train_student's val criterion")
    chosen.sort(key=lambda i: data.ids[i])
    ids = [data.ids[i] for i in chosen]
    bicubic, hr_images = data.bicubic[chosen].to(device), data.hr[chosen].to(device)
    schedule, target = teacher.schedule, teacher.target
    labels = torch.full((len(ids),), NULL_CLASS, device=device)
    noise = torch.stack([torch.randn(tuple(bicubic.shape[1:]), generator=g) for g in
                         [torch_generator(params.seed, f"student-val:{i}") for i in ids]]).to(device)
    batch = make_batch(teacher.model, schedule, target, hr_images, bicubic, labels, noise, params.teacher_steps)
    return ValSet(ids, bicubic, hr_images, batch.teacher_x0, params.seed)


def evaluate(model: torch.nn.Module, teacher: LoadedUNet, val: ValSet) -> tuple[float, float]:
    """(MSE of the one-step output to the teacher's in the diffused space, mean PSNR to HR in dB)."""
    labels = torch.full((len(val.ids),), NULL_CLASS)
    sampler = make_sampler(model, teacher.schedule, teacher.target, SamplerSpec(StudentSampler.name, 1))
    sr = sampler.sample(val.bicubic, labels, val.generators())
    x0 = encode_target(sr, val.bicubic, teacher.target)
    mse = float(torch.mean((x0 - val.teacher_x0) ** 2))
    per_image = torch.mean((sr - val.hr) ** 2, dim=(1, 2, 3)).clamp_min(1e-12)
    return mse, float(torch.mean(10 * torch.log10(1 / per_image)))


def draw_batch(data: training.PairedImages, params: TrainStudentParams, generator: torch.Generator):
    hr, bicubic, labels = training.random_crops(data, params.batch_size, params.crop, params.hflip, generator)
    noise = torch.randn(hr.shape, generator=generator)
    drop = torch.rand(len(hr), generator=generator) < params.null_class_prob
    return hr, bicubic, torch.where(drop, torch.full_like(labels, NULL_CLASS), labels), noise


def resume_config(params: TrainStudentParams, teacher: LoadedUNet, data: training.PairedImages) -> dict:
    train = {k: v for k, v in to_jsonable(params).items() if k not in RESUME_INDEPENDENT}
    return {"train_student": train, "teacher_sha256": teacher.sha256, "data": data.content_sha256()}


class StudentTraining:
    """The state of one distillation run: student, EMA, optimizer, batch generator, log and the best val record."""

    def __init__(self, teacher: LoadedUNet, params: TrainStudentParams, data: training.PairedImages, val: ValSet,
                 device: torch.device, log: Path | None, checkpoints: Path | None):
        teacher.model.requires_grad_(False).eval()
        self.teacher, self.params, self.data, self.val, self.device, self.log = teacher, params, data, val, device, log
        self.student = load_teacher_copy(teacher, device)
        training.check_crop(params.crop, data, self.student.size_multiple, "train_student.crop")
        self.ema = EMA(self.student, params.ema_decay)
        self.optimizer = torch.optim.Adam(self.student.parameters(), lr=params.learning_rate)
        self.generator = torch.Generator().manual_seed(params.seed)
        self.config = resume_config(params, teacher, data)
        self.step, self.rows, self.window, self.best, self.saved_step = 0, [], [], None, None
        self.checkpoints = checkpoints
        self.state_path = checkpoints / STATE_FILE if checkpoints else None

    def resume(self) -> None:
        path = self.state_path
        if path is None or not path.is_file():
            return
        state = load_training_state(path)
        if state.get("config") == self.config and state["step"] <= self.params.steps:
            self.student.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.generator.set_state(state["generator"])
            self.step, self.rows, self.best = int(state["step"]), list(state["log"]), state["best"]
            self.saved_step = int(state["step"])
            print(f"train-student: resuming from {path} at step {self.step}", file=sys.stderr)
        else:
            print(f"train-student: {path} was written for other parameters, teacher or data, or past "
                  f"train_student.steps {self.params.steps}; starting anew", file=sys.stderr)

    def diverged(self, what: str) -> training.Diverged:
        kept = (f"last good checkpoint (step {self.saved_step}) kept in {self.checkpoints}"
                if self.saved_step is not None else "no checkpoint of this run kept")
        return training.Diverged(f"train-student: {what} after step {self.step} (train_student.learning_rate "
                                 f"{self.params.learning_rate:g}): training diverged; no model written; {kept}")

    def evaluate_and_save(self) -> None:
        """The val criterion on the EMA weights; the best record kept; the log and a resumable checkpoint written."""
        if not training.all_finite(self.student, self.ema.shadow):
            raise self.diverged("non-finite weights")
        mse, psnr = evaluate(self.ema.shadow, self.teacher, self.val)
        if not math.isfinite(mse):
            raise self.diverged("non-finite val output")
        window = self.window
        means = {k: (sum(w[k] for w in window) / len(window) if window and k in window[0] else "")
                 for k in ("loss", "distill", "inverse", "gt")}
        self.rows.append({"step": self.step, **means, "val_mse_to_teacher": mse, "val_psnr": psnr,
                          "learning_rate": self.params.learning_rate})
        self.window = []
        if self.best is None or mse < self.best["record"]["val_mse_to_teacher"]:
            self.best = {"record": {"step": self.step, "val_mse_to_teacher": mse, "val_psnr": psnr},
                         "weights": {k: v.detach().cpu().clone() for k, v in self.ema.shadow.state_dict().items()}}
        print(f"train-student: step {self.step}: val MSE to the teacher {mse:.5f}, val PSNR {psnr:.2f} dB",
              file=sys.stderr)
        if self.log is not None:
            io.write_csv(self.log, self.rows, LOG_FIELDS)
        if self.state_path is not None:
            save_training_state(self.state_path, {
                "config": self.config, "step": self.step, "model": self.student.state_dict(),
                "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "log": self.rows, "best": self.best})
            self.saved_step = self.step

    def update(self) -> None:
        """One optimizer step on SinSR's losses; a non-finite loss stops the run before the update."""
        params, teacher = self.params, self.teacher
        hr, bicubic, labels, noise = draw_batch(self.data, params, self.generator)
        hr, bicubic, labels, noise = (x.to(self.device) for x in (hr, bicubic, labels, noise))
        torch.manual_seed(derived_seed(params.seed, "student", self.step))  # dropout masks, resumable
        batch: StudentBatch = make_batch(teacher.model, teacher.schedule, teacher.target, hr, bicubic, labels, noise,
                                         params.teacher_steps)
        losses = sinsr_losses(self.student, teacher.schedule, batch, params.inverse_weight, params.gt_weight)
        loss = losses["loss"]
        if not math.isfinite(loss.item()):  # before the update: the weights and checkpoints stay finite
            raise self.diverged(f"loss is {loss.item()} in step {self.step + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if params.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), params.grad_clip)
        self.optimizer.step()
        self.ema.update(self.student)
        self.step += 1
        self.window.append({k: float(v.item()) for k, v in losses.items()})


def train(teacher: LoadedUNet, params: TrainStudentParams, data: training.PairedImages, val: ValSet, *,
          device: torch.device, log: Path | None, checkpoints: Path | None) -> tuple[dict, dict]:
    """The training loop; returns (the best EMA state dict, its record {step, val_mse_to_teacher, val_psnr})."""
    run = StudentTraining(teacher, params, data, val, device, log, checkpoints)
    run.resume()
    if run.step == 0:
        run.evaluate_and_save()  # step 0: the teacher's weights used in one step
    run.student.train()
    progress = tqdm(total=params.steps, initial=run.step, desc="train-student", dynamic_ncols=True, mininterval=2.0)
    try:
        while run.step < params.steps:
            run.update()
            progress.update(1)
            if run.step % params.eval_every == 0 or run.step == params.steps:
                run.student.eval()
                run.evaluate_and_save()
                run.student.train()
    finally:
        progress.close()
    if run.best is None:  # resumed at the end of a finished run without a best record: cannot happen, kept explicit
        raise MedsrError(f"train-student: no val evaluation recorded in {run.state_path}; {STATE_FILE} is "
                         f"inconsistent")
    return run.best["weights"], run.best["record"]


def load_teacher_copy(teacher: LoadedUNet, device: torch.device) -> torch.nn.Module:
    """The student: a trainable copy of the teacher's network (SinSR initialises the student from the teacher)."""
    student = copy.deepcopy(teacher.model).to(device).requires_grad_(True)
    return student


def run(params: TrainStudentParams, *, teacher: Path, hr: Path, lr: Path, model: Path, log: Path,
        checkpoints: Path, device: torch.device | None) -> None:
    training.set_threads()
    device = device or torch.device("cpu")
    deterministic_mode(device)
    loaded = load_teacher(teacher, device)
    if params.teacher_steps > loaded.schedule.timesteps:
        raise MedsrError(f"train_student.teacher_steps: {params.teacher_steps} exceeds the teacher's "
                         f"{loaded.schedule.timesteps} diffusion timesteps ({teacher})")
    data = training.load_pairs(hr, lr, "train")
    if data.scale != loaded.scale or list(data.hr_size) != list(loaded.metadata["hr_size"]):
        raise MedsrError(f"{teacher}: trained on scale {loaded.scale}, HR {loaded.metadata['hr_size']} images; "
                         f"{hr} has scale {data.scale}, HR {list(data.hr_size)}")
    val = val_set(loaded, hr, lr, params, device)
    print(f"train-student: {len(data.ids)} train images, {len(val.ids)} val images; teacher {teacher} "
          f"(deterministic, {params.teacher_steps} steps); {params.steps} steps x batch {params.batch_size}",
          file=sys.stderr)
    weights, record = train(loaded, params, data, val, device=device, log=log, checkpoints=checkpoints)
    metadata = {key: loaded.metadata[key] for key in ("sr_model", "diffusion", "scale", "hr_size", "lr_size")}
    metadata |= {"kind": "sr_diffusion", "weights": "ema", "training_steps": params.steps,
                 STUDENT_KEY: {"method": "sinsr", "teacher_sha256": loaded.sha256, "teacher": str(teacher),
                               "train_student": to_jsonable(params), "best": record}}
    save_model(model, weights, metadata)
    print(f"train-student: wrote {model} (EMA weights of step {record['step']}: val MSE to the teacher "
          f"{record['val_mse_to_teacher']:.5f}, val PSNR {record['val_psnr']:.2f} dB)", file=sys.stderr)
