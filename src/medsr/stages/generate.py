"""`medsr generate`: super-resolve one shard of the val and test LR images with the diffusion model.

Val images serve the operating points chosen on val, test images the verdict; the job of evaluate.sr_classifier's
guidance mode at the first sampling seed also super-resolves the train images (the SR-trained classifier's).
The ids (sorted) are split into `len(generate.shards)` contiguous shards; shard k is one job
(one SLURM job, one DVC matrix stage). Each image's noise comes from (seed, image id), so a shard's
images are the same whatever the shard count or batch size. Guidance (recorded in metadata.json):
  null       unconditional: the null class (the thesis's inference)
  predicted  the class the guide classifier (trained on bicubic images) gives the bicubic image
  oracle     the true label: leaks the answer; for ablation only, flagged everywhere downstream
  swapped    the opposite of the true label: the class-swap audit's mode, flagged like oracle

Posterior samples (medsr.diffusion.posterior): for `generate.posterior_images` val and test images, N =
`generate.samples_per_image` extra stochastic draws (DDIM with eta = generate.sample_eta, or ancestral), noise keyed
by (seed, image id, sample index); in a null run also one swapped-label draw sharing sample 0's noise. The SR
set's main image stays the configured sampler's draw (today's image, so every existing number is unchanged); the
samples only feed the uncertainty maps, decision stability and the class-swap audit.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from medsr.core import io
from medsr.diffusion import posterior
from medsr.core.config import generation_splits, sampler_mismatch
from medsr.core.parameters import (CLASSES, EVAL_SPLITS, GUIDANCE_MODES, GUIDED_BY_CLASSIFIER, LEAKING_GUIDANCE,
                              NULL_CLASS, EvaluateParams, GenerateParams)
from medsr.diffusion.unet import STUDENT_KEY, load_unet
from medsr.diffusion.samplers import Sampler, SamplerSpec, image_generators, make_sampler
from medsr.core.errors import MedsrError
from medsr.data.pixels import quantize
from medsr.core.randomness import torch_generator



def shard_records(records: list[io.Record], shard: int, shards: int) -> list[io.Record]:
    """Shard `shard` of `shards`: a contiguous block of the records sorted by id."""
    ordered = sorted(records, key=lambda r: r.id)
    blocks = np.array_split(np.arange(len(ordered)), shards)
    return [ordered[i] for i in blocks[shard]]


def guide_labels(guidance: str, records: list[io.Record], *, guide: Path | None, bicubic: Path | None,
                 batch_size: int, device: torch.device) -> torch.Tensor:
    """The class each image is guided towards (NULL_CLASS for none); only predicted guidance reads the guide
    classifier and the bicubic images."""
    if guidance == "null":
        return torch.full((len(records),), NULL_CLASS, dtype=torch.long)
    if guidance == "oracle":
        return torch.tensor([CLASSES.index(r.label) for r in records])
    if guidance == "swapped":
        return torch.tensor([posterior.swapped_label(r.label) for r in records], dtype=torch.long)
    if guidance != GUIDED_BY_CLASSIFIER:
        raise MedsrError(f"generate: unknown guidance {guidance!r} (one of {', '.join(GUIDANCE_MODES)})")
    if guide is None or bicubic is None:
        raise MedsrError("generate: predicted guidance needs the guide classifier and the bicubic images "
                         "(--guide, --bicubic)")
    from medsr.classifier.model import load_classifier, predict_proba  # torchvision: only for predicted guidance

    classifier = load_classifier(guide, device)
    by_id = {r.id: r for r in io.read_manifest(bicubic)}
    missing = next((r.id for r in records if r.id not in by_id), None)
    if missing is not None:
        raise MedsrError(f"{Path(bicubic) / io.MANIFEST}: no bicubic image {missing} for the guide classifier")
    images = torch.from_numpy(io.load_images(bicubic, [by_id[r.id] for r in records]))[:, None]
    return predict_proba(classifier, images, batch_size).argmax(dim=1)


def run(params: GenerateParams, evaluate: EvaluateParams, *, model: Path, lr: Path, out: Path, guidance: str,
        seed: int, shard: int, guide: Path | None = None, bicubic: Path | None = None,
        device: torch.device | None = None) -> None:
    device = device or torch.device("cpu")
    check_job(params, guidance, shard)
    loaded = load_unet(model, "sr_diffusion", device)
    spec = configured_spec(params, loaded, model)
    splits = generation_splits(evaluate, guidance, seed)
    all_records = io.read_manifest(lr, split=EVAL_SPLITS)  # posterior samples are drawn for val/test images only
    records = shard_records(io.read_manifest(lr, split=splits), shard, len(params.shards))
    labels = guide_labels(guidance, records, guide=guide, bicubic=bicubic, batch_size=params.batch_size,
                          device=device)
    sampler = make_sampler(loaded.model, loaded.schedule, loaded.target, spec,
                           guidance_scale=1.0 if guidance == "null" else params.guidance_scale,
                           precision=params.precision)
    timesteps = loaded.schedule.timesteps
    print(f"generate: {len(records)} {'/'.join(splits)} images (shard {shard} of {len(params.shards)}), "
          f"{spec.name} with {spec.evaluations(timesteps)} steps, guidance {guidance} (w = {sampler.guidance_scale}), "
          f"seed {seed}, on {device} ({params.precision})", file=sys.stderr)
    images = sample_images(sampler, loaded, lr, records, labels, seed, params.batch_size)

    # --- posterior samples (chosen over all shards' records, so the choice is independent of sharding) ---
    drawn: dict[str, dict] = {}
    if params.samples_per_image > 1:
        chosen = posterior.chosen_ids(all_records, params.posterior_images)
        drawn = posterior_samples(params, loaded, lr, [r for r in records if r.id in chosen],
                                  {r.id: int(k) for r, k in zip(records, labels.tolist())}, guidance, seed)
    metadata = set_metadata(params, loaded, sampler, splits=splits, guidance=guidance, seed=seed, shard=shard,
                            guide=guide, records=records, labels=labels)
    with io.atomic_dir(out) as tmp:
        metadata[posterior.KEY] = {i: posterior.write(tmp, i, *drawn[i]) for i in sorted(drawn)}
        written = io.write_generated(tmp, records, images, [str(io.image_path(lr, r)) for r in records])
        io.write_manifest(tmp, written)  # an empty shard (more shards than images) has a header only
        io.write_json(tmp / "metadata.json", metadata)


def check_job(params: GenerateParams, guidance: str, shard: int) -> None:
    """The command line's guidance and shard, before anything is loaded."""
    if guidance not in GUIDANCE_MODES:
        raise MedsrError(f"--guidance: {guidance!r} is not one of {', '.join(GUIDANCE_MODES)}")
    if shard not in params.shards:
        raise MedsrError(f"--shard: {shard} is not in generate.shards {list(params.shards)}")


def check_student(sampler: str, metadata: Mapping[str, Any], model: Path) -> None:
    """A distilled student's model file (train-student's) is sampled by the student sampler, and only it samples one."""
    distilled = STUDENT_KEY in metadata
    if SamplerSpec(sampler, 1).sampler_class.distilled != distilled:
        raise MedsrError(f"{model}: generate.sampler: {sampler} cannot sample it, " + (
            "a distilled one-step student (use generate.sampler student)" if distilled else
            "which is not a distilled student (the DAG trains one: Snakemake by itself, DVC after `medsr dvc-sync`)"))


def configured_spec(params: GenerateParams, loaded, model: Path) -> SamplerSpec:
    """generate.sampler as configured, checked against the model file: its process and its T steps."""
    spec = SamplerSpec(params.sampler, params.steps, params.eta)
    mismatch = sampler_mismatch(params.sampler, loaded.process)
    if mismatch:
        raise MedsrError(f"{model}: generate.sampler: {mismatch}")
    check_student(params.sampler, loaded.metadata, model)
    timesteps = loaded.schedule.timesteps
    if spec.sampler_class.takes_steps and params.steps > timesteps:
        raise MedsrError(f"generate.steps: {params.steps} exceeds the model's {timesteps} diffusion timesteps")
    return spec


def sample_images(sampler: Sampler, loaded, lr: Path, records: list[io.Record], labels: torch.Tensor, seed: int,
                  batch_size: int) -> np.ndarray:
    """The set's main images, N x H x W in [0, 1], in batches; each image's noise keyed by (seed, image id)."""
    start = time.perf_counter()
    outputs = []
    for first in tqdm(range(0, len(records), batch_size), desc="generate", disable=not records,
                      mininterval=2.0, dynamic_ncols=True):
        batch = records[first:first + batch_size]
        sr = sampler.sample(loaded.bicubic_input(lr, batch), labels[first:first + len(batch)],
                            image_generators(seed, [r.id for r in batch]))
        outputs.append(sr[:, 0].float().cpu().numpy())
    elapsed = time.perf_counter() - start
    print(f"generate: {len(records)} images in {elapsed:.1f} s ({len(records) / max(elapsed, 1e-9):.2f} images/s)",
          file=sys.stderr)
    return np.concatenate(outputs) if outputs else np.zeros((0, 1, 1), np.float32)


def set_metadata(params: GenerateParams, loaded, sampler: Sampler, *, splits: tuple[str, ...], guidance: str,
                 seed: int, shard: int, guide: Path | None, records: list[io.Record], labels: torch.Tensor) -> dict:
    """metadata.json of the SR set (the posterior hashes are added as they are written)."""
    spec, post_spec = sampler.spec, posterior_spec(params)
    return {
        "set": "sr", "splits": list(splits), "sampler": spec.name, "steps": spec.evaluations(loaded.schedule.timesteps),
        "eta": spec.eta, "guidance": guidance, "guidance_scale": sampler.guidance_scale,
        "leaks_label": guidance in LEAKING_GUIDANCE,
        "seed": seed, "shard": shard, "shards": len(params.shards), "batch_size": params.batch_size,
        "precision": params.precision,
        "model_sha256": loaded.sha256, "process": loaded.process, "target": loaded.target,
        "x0_clipping": sampler.clip_x0,
        "guide_classifier_sha256": io.sha256_file(guide) if guidance == GUIDED_BY_CLASSIFIER else None,
        "guide_class": {r.id: (CLASSES[k] if k < len(CLASSES) else "null")
                        for r, k in zip(records, labels.tolist())},
        "samples_per_image": params.samples_per_image, "posterior_images": params.posterior_images,
        "posterior_sampler": post_spec.name, "posterior_eta": post_spec.eta,
        "swap_audit": guidance == "null" and params.samples_per_image > 1, "swapped_leaks_label": True,
    }


# --- posterior samples: kept apart from the main loop above ---------------------------

def posterior_spec(params: GenerateParams) -> SamplerSpec:
    """The stochastic sampler of the posterior samples: ancestral or resshift as configured (both draw noise at
    every step), else DDIM with sample_eta."""
    configured = SamplerSpec(params.sampler, params.steps, params.eta)
    return configured.sampler_class.posterior_spec(params.steps, params.sample_eta)


def posterior_generators(seed: int, ids: list[str], index: int) -> list[torch.Generator]:
    """Sample `index` of each image: noise keyed by (seed, image id, sample index), batch- and shard-free."""
    return [torch_generator(seed, f"posterior:{image_id}", index) for image_id in ids]


def posterior_samples(params: GenerateParams, loaded, lr: Path, records: list[io.Record], label_of: dict[str, int],
                      guidance: str, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """{id: (N x H x W quantized samples, swapped-label draw or None)}; the swapped draw (null runs only, the
    class-swap audit) reuses sample 0's noise, so swapped - sample 0 isolates what the injected label paints."""
    spec = posterior_spec(params)
    scale = 1.0 if guidance == "null" else params.guidance_scale
    sampler = make_sampler(loaded.model, loaded.schedule, loaded.target, spec, guidance_scale=scale,
                           precision=params.precision)
    swapper = make_sampler(loaded.model, loaded.schedule, loaded.target, spec, guidance_scale=params.guidance_scale,
                           precision=params.precision) if guidance == "null" else None
    start = time.perf_counter()
    out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for first in range(0, len(records), params.batch_size):
        batch = records[first:first + params.batch_size]
        ids = [r.id for r in batch]
        bicubic = loaded.bicubic_input(lr, batch)
        labels = torch.tensor([label_of[i] for i in ids], dtype=torch.long)
        draws = [
            quantize(sampler.sample(bicubic, labels, posterior_generators(seed, ids, k)))[:, 0].float().cpu().numpy()
            for k in range(params.samples_per_image)
        ]
        swapped = None
        if swapper is not None:
            injected = torch.tensor([posterior.swapped_label(r.label) for r in batch], dtype=torch.long)
            swapped = (
                quantize(swapper.sample(bicubic, injected, posterior_generators(seed, ids, 0)))[:, 0]
                .float()
                .cpu()
                .numpy()
            )
        for j, image_id in enumerate(ids):
            out[image_id] = (np.stack([d[j] for d in draws]), None if swapped is None else swapped[j])
    print(f"generate: {params.samples_per_image} posterior samples of {len(records)} images"
          f"{' + a swapped-label draw' if swapper else ''} ({spec.name}, eta {spec.eta}) in "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    return out
