"""An offline, deterministic, MRI-like two-class dataset: T1-weighted axial brain slices.

Each slice is drawn as a `Subject` (every random choice of one head) and rendered by `render`:
scalp, skull, CSF, a grey-matter cortex folded by sulci around white-matter gyri, an
interhemispheric fissure, lateral ventricles and deep grey nuclei, a smooth multiplicative bias
field and Rician noise (the magnitude of complex Gaussian noise, as in magnitude MR images).
Shapes are drawn at `SUPERSAMPLE` times the target size and averaged down (area anti-aliasing),
so edges carry partial-volume values as in a real acquisition.

The "unhealthy" class differs subtly, in ways that overlap with healthy anatomy:
- atrophy: on average larger ventricles, wider sulci, a wider CSF gap below the skull;
- a few small T1-hypointense white-matter lesions, 1-3 HR pixels across.
Most lesions are too small to survive downsampling by 2, so part of the class difference is lost in
the LR image: the effect the SR experiment is about. Every image has its own seed
(data.synthetic.seed, split, label, index), so an image does not depend on the dataset size.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np
from scipy import ndimage

from medsr.core.parameters import CLASSES, SyntheticSource

SUPERSAMPLE = 4  # render at 4x the HR size, then average 4x4 blocks
SPLITS = ("train", "test")  # the folders of a source; val is carved from train at download (medsr.data.splits)

# Concentric layers, in head-normalized radius t (t = 1 is the outer scalp surface).
SCALP_INNER = 0.92
SKULL_INNER = 0.86


@dataclasses.dataclass(frozen=True)
class Tissue:
    """T1-weighted intensities on the [0, 1] scale (before bias field and noise)."""

    scalp: float
    skull: float
    csf: float
    grey: float
    white: float
    deep_grey: float


@dataclasses.dataclass(frozen=True)
class Sulcus:
    angle: float  # direction in the head-normalized frame, radians
    width_px: float  # CSF cleft width, HR pixels
    depth: float  # how far the cleft reaches below the brain surface, in t units
    curl: float  # radians the cleft turns between the surface and its fundus


@dataclasses.dataclass(frozen=True)
class Lesion:
    x: float  # centre in head coordinates (image units, before rotation and shift)
    y: float
    diameter_px: float  # HR pixels
    contrast: float  # fractional intensity drop (T1-hypointense)


@dataclasses.dataclass(frozen=True)
class Subject:
    """Every random choice of one slice; `render` is a pure function of it."""

    unhealthy: bool
    angle: float  # head rotation, radians
    shift: tuple[float, float]  # head centre offset (image units; the image spans [-1, 1])
    half_width: float  # lateral semi-axis of the scalp outline (image units)
    aspect: float  # anterior-posterior / lateral
    outline: tuple[tuple[float, float], ...]  # (amplitude, phase) of harmonics 2, 3, 4 of the outline
    brain_surface: float  # t of the cortical surface (below it: the CSF gap to the skull)
    cortex_thickness: float  # in t units
    gyral_finger: float  # how far white matter reaches into each gyrus, in t units
    sulci: tuple[Sulcus, ...]
    fissure_width_px: float
    ventricle_scale: float  # 1 = typical healthy ventricles
    ventricle_tilt: float  # radians: the frontal horns diverge
    ventricle_bend: float
    ventricle_offset: float  # anterior-posterior offset of the ventricles (fraction of the semi-axis)
    tissue: Tissue
    lesions: tuple[Lesion, ...]
    bias: tuple[float, ...]  # coefficients of a smooth polynomial bias field
    texture_seed: int
    noise_std: float  # Rician noise sigma on the [0, 1] scale
    noise_seed: int


# --- drawing a subject -----------------------------------------------------------------------

def image_seed(seed: int, split: str, label: str, index: int) -> np.random.SeedSequence:
    """The seed of one image: independent of the dataset size and of the other images."""
    return np.random.SeedSequence([seed, SPLITS.index(split), CLASSES.index(label), index])


def draw_subject(rng: np.random.Generator, unhealthy: bool) -> Subject:
    """Draw one head. Healthy and unhealthy share every distribution except the atrophy / lesion ones."""
    half_width = rng.uniform(0.68, 0.78)
    aspect = rng.uniform(1.10, min(1.28, 0.93 / half_width))
    outline = tuple((rng.normal(0.0, 0.012), rng.uniform(0, 2 * math.pi)) for _ in range(3))
    # Atrophy: the distributions overlap; unhealthy means are shifted, not separated.
    atrophy = rng.normal(0.55 if unhealthy else 0.0, 0.35)
    ventricle_scale = float(np.exp(rng.normal(0.0, 0.16) + 0.2 * atrophy))
    sulcal_width = float(np.clip(rng.normal(0.75, 0.18) + 0.4 * atrophy, 0.35, 2.2))
    brain_surface = 0.835 - 0.012 * max(atrophy, 0.0) - rng.uniform(0.0, 0.01)
    cortex_thickness = rng.uniform(0.09, 0.12) - 0.01 * max(atrophy, 0.0)
    n_sulci = int(rng.integers(18, 25))
    base = rng.uniform(0, 2 * math.pi)
    sulci = tuple(
        Sulcus(angle=base + 2 * math.pi * (j + rng.uniform(-0.3, 0.3)) / n_sulci,
               width_px=float(sulcal_width * rng.uniform(0.7, 1.3)),
               depth=float(rng.uniform(0.35, 1.0) * (cortex_thickness + 0.05)),
               curl=float(rng.normal(0.0, 0.08)))
        for j in range(n_sulci))
    grey = rng.uniform(0.40, 0.50)
    white = grey + rng.uniform(0.20, 0.30)
    tissue = Tissue(scalp=rng.uniform(0.55, 0.80), skull=rng.uniform(0.05, 0.12),
                    csf=rng.uniform(0.06, 0.14), grey=grey, white=white,
                    deep_grey=grey + rng.uniform(0.06, 0.12))
    subject = Subject(
        unhealthy=unhealthy, angle=rng.uniform(-0.2, 0.2),
        shift=(rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04)), half_width=half_width, aspect=aspect,
        outline=outline, brain_surface=brain_surface, cortex_thickness=cortex_thickness,
        gyral_finger=rng.uniform(0.03, 0.06), sulci=sulci, fissure_width_px=sulcal_width * rng.uniform(0.8, 1.2),
        ventricle_scale=ventricle_scale, ventricle_tilt=rng.uniform(0.0, 0.15),
        ventricle_bend=rng.uniform(0.8, 1.6), ventricle_offset=rng.uniform(-0.12, 0.02), tissue=tissue,
        lesions=(), bias=tuple(rng.normal(0.0, 0.08, size=5)), texture_seed=int(rng.integers(2**31)),
        noise_std=rng.uniform(0.012, 0.025), noise_seed=int(rng.integers(2**31)))
    n_lesions = int(rng.integers(3, 7)) if unhealthy else int(rng.random() < 0.25)
    lesions = tuple(_draw_lesion(rng, subject, faint=not unhealthy) for _ in range(n_lesions))
    return dataclasses.replace(subject, lesions=lesions)


def _draw_lesion(rng: np.random.Generator, subject: Subject, faint: bool) -> Lesion:
    """A lesion centre in deep white matter (rejection sampling); healthy heads may get one faint dot."""
    a, b = subject.half_width, subject.half_width * subject.aspect
    white_limit = subject.brain_surface - subject.cortex_thickness - 0.04
    for _ in range(200):
        x, y = rng.uniform(-a, a), rng.uniform(-b, b)
        t, _ = _normalized_radius(subject, np.array([x]), np.array([y]))
        inside = 0.18 < t[0] < white_limit
        clear = not (_ventricles(subject, np.array([x]), np.array([y]), margin=0.05)[0]
                     or _deep_grey(subject, np.array([x]), np.array([y]), margin=0.03)[0]
                     or abs(x) < 0.06)
        if inside and clear:
            break
    if faint:  # a perivascular-space-like dot: the healthy class is not lesion-free by construction
        return Lesion(x, y, diameter_px=rng.uniform(0.8, 1.3), contrast=rng.uniform(0.15, 0.3))
    return Lesion(x, y, diameter_px=rng.uniform(1.0, 3.0), contrast=rng.uniform(0.45, 0.75))


# --- geometry (head coordinates: image units, centred, unrotated) -----------------------------

def _normalized_radius(subject: Subject, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """t = 1 on the (wavy) scalp outline, 0 at the centre; and the angle in the normalized frame."""
    xn, yn = x / subject.half_width, y / (subject.half_width * subject.aspect)
    phi = np.arctan2(yn, xn)
    radius = 1.0 + sum(amp * np.cos((k + 2) * phi + phase) for k, (amp, phase) in enumerate(subject.outline))
    return np.hypot(xn, yn) / radius, phi


def _ventricles(subject: Subject, x: np.ndarray, y: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Two crescents either side of the septum, ends bowing outwards, frontal horns diverging."""
    a, b = subject.half_width, subject.half_width * subject.aspect
    scale = subject.ventricle_scale
    half_width = 0.06 * a * scale + margin
    half_length = 0.28 * b * (0.85 + 0.15 * scale) + margin
    septum = 0.03
    inside = np.zeros(np.shape(x), dtype=bool)
    for side in (-1.0, 1.0):
        cx, cy = side * (septum + 0.06 * a * scale), subject.ventricle_offset * b
        c, s = math.cos(side * subject.ventricle_tilt), math.sin(side * subject.ventricle_tilt)
        u, v = c * (x - cx) + s * (y - cy), -s * (x - cx) + c * (y - cy)
        u = u - side * subject.ventricle_bend * (v / half_length) ** 2 * half_width  # crescent
        inside |= (u / half_width) ** 2 + (v / half_length) ** 2 < 1.0
    return inside


def _deep_grey(subject: Subject, x: np.ndarray, y: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Thalami / basal ganglia: two blobs lateral to the ventricles."""
    a, b = subject.half_width, subject.half_width * subject.aspect
    inside = np.zeros(np.shape(x), dtype=bool)
    for side in (-1.0, 1.0):
        cx, cy = side * 0.25 * a, 0.08 * b
        inside |= ((x - cx) / (0.10 * a + margin)) ** 2 + ((y - cy) / (0.16 * b + margin)) ** 2 < 1.0
    return inside


# --- rendering -------------------------------------------------------------------------------

def render(subject: Subject, size: int) -> np.ndarray:
    """The slice as a float32 `size` x `size` array in [0, 1]."""
    n = size * SUPERSAMPLE
    hr_px = 2.0 / size  # one HR pixel in image units
    axis = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    u, v = np.meshgrid(axis, axis)  # u: column (left-right), v: row
    c, s = math.cos(subject.angle), math.sin(subject.angle)
    du, dv = u - subject.shift[0], v - subject.shift[1]
    x, y = c * du + s * dv, -s * du + c * dv
    t, phi = _normalized_radius(subject, x, y)
    tissue = subject.tissue

    image = np.zeros((n, n), dtype=np.float32)
    image[(t >= SCALP_INNER) & (t < 1.0)] = tissue.scalp
    image[(t >= SKULL_INNER) & (t < SCALP_INNER)] = tissue.skull
    image[(t >= subject.brain_surface) & (t < SKULL_INNER)] = tissue.csf
    brain = t < subject.brain_surface
    image[brain] = _brain(subject, x[brain], y[brain], t[brain], phi[brain], hr_px)

    image = image.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))  # area anti-aliasing
    return scanner_effects(image, subject.bias, subject.noise_seed, subject.noise_std)


def _brain(subject: Subject, x: np.ndarray, y: np.ndarray, t: np.ndarray, phi: np.ndarray,
           hr_px: float) -> np.ndarray:
    """Intensities of the pixels inside the brain surface (1-D arrays of those pixels)."""
    tissue = subject.tissue
    a, b = subject.half_width, subject.half_width * subject.aspect
    # Sulci: CSF clefts running inwards from the surface, curving as they deepen and widening towards
    # the surface; white matter reaches into the gyri between them, so the cortex folds around each.
    radius = np.hypot(x, y)
    nearest = np.full(x.shape, np.inf)
    cleft = np.zeros(x.shape, dtype=bool)
    for sulcus in subject.sulci:
        below = np.clip((subject.brain_surface - t) / sulcus.depth, 0.0, None)  # 0 at the surface
        centre = sulcus.angle + sulcus.curl * below
        across = np.abs((phi - centre + math.pi) % (2 * math.pi) - math.pi) * radius
        nearest = np.minimum(nearest, across)
        half_width = 0.5 * sulcus.width_px * hr_px * (1.3 - 0.6 * np.minimum(below, 1.0))
        cleft |= (across < half_width) & (below < 1.0)
    gyrus_half = math.pi * 0.6 * (a + b) / len(subject.sulci)
    white_edge = (subject.brain_surface - subject.cortex_thickness
                  + subject.gyral_finger * np.clip(nearest / gyrus_half, 0.0, 1.0) ** 0.7)
    values = np.where(t < white_edge, tissue.white, tissue.grey).astype(np.float32)
    values[_deep_grey(subject, x, y)] = tissue.deep_grey
    fissure = (np.abs(x) < 0.5 * subject.fissure_width_px * hr_px) & (np.abs(y) > 0.32 * b)
    values[cleft | fissure] = tissue.csf
    values[_ventricles(subject, x, y)] = tissue.csf
    for lesion in subject.lesions:
        radius = 0.5 * lesion.diameter_px * hr_px
        spot = (x - lesion.x) ** 2 + (y - lesion.y) ** 2 < radius**2
        values[spot] *= 1.0 - lesion.contrast
    return values * _texture(subject, x, y)


def _texture(subject: Subject, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Low-amplitude smooth tissue heterogeneity (a few percent)."""
    coarse = np.random.default_rng(subject.texture_seed).normal(0.0, 1.0, size=(12, 12))
    field = ndimage.map_coordinates(coarse, [(y + 1.0) * 5.5, (x + 1.0) * 5.5], order=3, mode="reflect")
    return (1.0 + 0.03 * field).astype(np.float32)


def bias_field(b: tuple[float, ...], size: int) -> np.ndarray:
    """A smooth multiplicative intensity non-uniformity (coil sensitivity), about +-10-20 %: exp of a quadratic
    in the image coordinates u (column) and v (row), both in [-1, 1], with coefficients b."""
    axis = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    u, v = np.meshgrid(axis, axis)
    field = b[0] * u + b[1] * v + b[2] * u * v + b[3] * (u**2 - 0.33) + b[4] * (v**2 - 0.33)
    return np.exp(field).astype(np.float32)


def scanner_effects(image: np.ndarray, bias: tuple[float, ...], noise_seed: int, noise_std: float) -> np.ndarray:
    """What the scanner adds to a rendered square slice (both generators): the bias field, then Rician noise (the
    magnitude of the image plus complex Gaussian noise of std `noise_std`, drawn from `noise_seed`); float32 in
    [0, 1]."""
    size = image.shape[0]
    image = image * bias_field(bias, size)
    noise = np.random.default_rng(noise_seed).normal(0.0, noise_std, size=(2, size, size))
    image = np.hypot(image + noise[0], noise[1])  # Rician: magnitude of complex Gaussian noise
    return np.clip(image, 0.0, 1.0).astype(np.float32)


# --- the dataset -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SyntheticImage:
    id: str
    split: str
    label: str
    image: np.ndarray
    subject: Subject


def image_id(split: str, label: str, index: int) -> str:
    """Classes interleave (even ids healthy, odd unhealthy), so an id does not depend on the set size."""
    return f"{split}_{2 * index + CLASSES.index(label):05d}"


def subject_for(seed: int, split: str, label: str, index: int) -> Subject:
    rng = np.random.default_rng(image_seed(seed, split, label, index))
    return draw_subject(rng, unhealthy=label == "unhealthy")


def generate(params: SyntheticSource, image_size: int) -> Iterator[SyntheticImage]:
    """Every image of the dataset, split by split, in id order."""
    for split in SPLITS:
        per_class = params.train_per_class if split == "train" else params.test_per_class
        for index in range(per_class):
            for label in CLASSES:
                subject = subject_for(params.seed, split, label, index)
                yield SyntheticImage(image_id(split, label, index), split, label,
                                     render(subject, image_size), subject)
