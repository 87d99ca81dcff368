"""The embedded default dataset (data.source: mni): axial T1 slices of a real brain template, with lesions whose
class shows only in their morphology, at the scale of one LR pixel.

Anatomy: the ICBM 2009a nonlinear symmetric MNI152 template (T1 and grey / white matter probability maps, 1 mm
isotropic; Fonov et al., NeuroImage 2011) as shipped inside the nilearn wheel (nilearn/datasets/data). The files
are read with nibabel straight from the installed package: nothing is downloaded and nilearn is not imported.

Each image is one `Subject` (every random choice of one slice; `render` is a pure function of it):
- an axial slice between z = +2 and +34 mm (MNI), tilted up to 4 degrees out of plane;
- an affine warp (rotation, anisotropic scale, shear, shift) and a smooth elastic warp (a few mm);
- contrast (gamma, grey / white matter contrast, gain), a smooth multiplicative bias field and Rician noise
  (the magnitude of complex Gaussian noise, as in magnitude MR images);
- `lesion_count` T1-hypointense white-matter lesions of outer radius about `lesion_radius` HR pixels.

The class is in the lesions' morphology only. "unhealthy": rim lesions, a hypointense ring `rim_width` HR pixels
thick around a core of normal intensity (the look of paramagnetic rim lesions in multiple sclerosis: Absinta
et al., JAMA Neurol 2019). "healthy": solid lesions of the same outer radius and the same mass (the summed
intensity drop is equal: the solid lesion's contrast is the rim's times ring area / disc area, counted on the
supersampled grid). Both classes draw count, radius, contrast and position from the same distributions, so
nothing global (ventricles, atrophy, lesion load) tells them apart. With radius near one LR pixel (degrade.scale
HR pixels) the ring's hole is gone after downsampling: `lesion_radius` is the difficulty knob
(benchmarks/difficulty.py sweeps it): larger radii leave the rim visible at LR, smaller ones hide it at HR too.

Every image has its own seed (data.mni.seed, split, label, index), so an image does not depend on the dataset
size. The anatomy is sampled at ANATOMY_SUPERSAMPLE and the lesions drawn at SUPERSAMPLE times the target size,
then averaged down (area anti-aliasing: edges carry partial-volume values as in a real acquisition).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
from scipy import interpolate, ndimage

from medsr.core.parameters import CLASSES, MniSource
from medsr.data.synthetic import SPLITS, image_id, image_seed, scanner_effects
from medsr.core.errors import MedsrError
from medsr.core.io import sha256_file

SUPERSAMPLE = 4  # lesions are drawn at 4x the HR size, then 4x4 blocks averaged (area anti-aliasing)
ANATOMY_SUPERSAMPLE = 2  # the template (1 mm voxels) is sampled at 2x the HR size (1.5 mm at 64 px), then averaged
FIELD_OF_VIEW_MM = 192.0  # side of the square field of view (the template brain is 145 x 181 mm axially)
TEMPLATE_FILES = {name: f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz" for name in ("t1", "gm", "wm")}
SLICE_MM = (2.0, 34.0)  # axial slice range (MNI z): lateral ventricles, deep white matter, centrum semiovale
SLAB_MM = (-8.0, 44.0)  # the part of the template kept in memory (slice range plus the tilt's reach)
BRAIN_CENTRE_MM = (0.0, -18.0)  # MNI (x, y) at the image centre: the middle of the brain's axial extent
WHITE_MATTER = 0.5  # a lesion lies where the white matter probability (HR grid) exceeds this over its disc
LESION_GAP_PX = 1.5  # minimum HR pixels of normal tissue between two lesions


@dataclasses.dataclass(frozen=True)
class Template:
    t1: np.ndarray  # (x, y, z) voxels of the slab, float32 in [0, 1]
    gm: np.ndarray  # grey matter probability
    wm: np.ndarray  # white matter probability
    affine: np.ndarray  # voxel (of the slab) -> MNI mm


def template_folder() -> Path:
    """nilearn/datasets/data of the installed nilearn, found without importing nilearn."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise MedsrError("data.source: mni needs the nilearn package (its wheel ships the MNI152 template): "
                         "pip install nilearn")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


@cache
def load_template() -> Template:
    """The template's axial slab SLAB_MM, read once per process."""
    import nibabel  # installed with nilearn

    folder = template_folder()
    volumes, affine = {}, None
    for name, file in TEMPLATE_FILES.items():
        path = folder / file
        if not path.is_file():
            raise MedsrError(f"{path}: MNI152 template file missing (reinstall nilearn)")
        image = nibabel.load(path)
        if affine is None:
            affine = image.affine
            z0 = int(round((SLAB_MM[0] - affine[2, 3]) / affine[2, 2]))
            z1 = int(round((SLAB_MM[1] - affine[2, 3]) / affine[2, 2])) + 1
        volumes[name] = np.asarray(image.dataobj[:, :, z0:z1], dtype=np.float32) / 255.0
    slab_affine = affine.copy()
    slab_affine[:3, 3] = affine[:3, :3] @ np.array([0, 0, z0]) + affine[:3, 3]
    return Template(volumes["t1"], volumes["gm"], volumes["wm"], slab_affine)


def template_provenance() -> dict:
    """For download.json: the template files the images were drawn from, with their sha256."""
    folder = template_folder()
    return {"template": "ICBM 2009a nonlinear symmetric MNI152 (Fonov et al. 2011), from the nilearn package",
            "files": {file: sha256_file(folder / file) for file in TEMPLATE_FILES.values()}}


@dataclasses.dataclass(frozen=True)
class Lesion:
    row: float  # centre, HR pixels (0.5 = centre of the first pixel)
    col: float
    radius_px: float  # outer radius, HR pixels
    contrast: float  # fractional intensity drop of the rim (the solid lesion's is scaled to equal mass)


@dataclasses.dataclass(frozen=True)
class Subject:
    """Every random choice of one slice; `render` is a pure function of it (and of the params' geometry)."""

    rim: bool  # unhealthy: rim lesions; healthy: solid lesions of equal size and mass
    slice_mm: float
    tilt: tuple[float, float]  # out-of-plane slope of z along the image's rows and columns
    affine: tuple[float, float, float, float]  # 2x2 matrix (output mm -> template mm), row-major
    shift_mm: tuple[float, float]
    elastic_mm: float  # std of the elastic displacement
    elastic_seed: int
    gamma: float
    gm_wm_contrast: float  # added white-minus-grey contrast (fraction)
    gain: float
    bias: tuple[float, ...]  # coefficients of a smooth polynomial bias field
    noise_std: float  # Rician sigma on the [0, 1] scale
    noise_seed: int
    lesion_seed: int  # positions are drawn from the warped white matter, so they need the anatomy first
    lesion_count: int
    lesion_radii: tuple[float, ...]  # HR pixels
    lesion_contrasts: tuple[float, ...]


def draw_subject(rng: np.random.Generator, unhealthy: bool, params: MniSource) -> Subject:
    """Draw one slice. Both classes share every distribution; only `rim` differs."""
    angle = rng.uniform(-0.17, 0.17)
    scale = rng.uniform(0.90, 1.08, size=2)
    shear = rng.normal(0.0, 0.04)
    c, s = math.cos(angle), math.sin(angle)
    matrix = np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(1.0 / scale)
    count = int(rng.integers(params.lesion_count[0], params.lesion_count[1] + 1))
    radius_jitter = params.lesion_radius_jitter
    return Subject(
        rim=unhealthy, slice_mm=rng.uniform(*SLICE_MM), tilt=tuple(rng.uniform(-0.07, 0.07, size=2)),
        affine=tuple(matrix.ravel()), shift_mm=tuple(rng.uniform(-6.0, 6.0, size=2)),
        elastic_mm=rng.uniform(1.0, 3.0), elastic_seed=int(rng.integers(2**31)),
        gamma=rng.uniform(0.8, 1.25), gm_wm_contrast=rng.uniform(-0.06, 0.10), gain=rng.uniform(0.9, 1.1),
        bias=tuple(rng.normal(0.0, 0.08, size=5)), noise_std=rng.uniform(0.01, 0.025),
        noise_seed=int(rng.integers(2**31)), lesion_seed=int(rng.integers(2**31)), lesion_count=count,
        lesion_radii=tuple(params.lesion_radius * rng.uniform(1 - radius_jitter, 1 + radius_jitter, size=count)),
        lesion_contrasts=tuple(params.lesion_contrast * rng.uniform(0.8, 1.2, size=count)))


def subject_for(params: MniSource, split: str, label: str, index: int) -> Subject:
    rng = np.random.default_rng(image_seed(params.seed, split, label, index))
    return draw_subject(rng, unhealthy=label == "unhealthy", params=params)


# --- rendering -------------------------------------------------------------------------------

def _sample_grid(subject: Subject, n: int, pixel_mm: float, template: Template) -> np.ndarray:
    """Template voxel coordinates (3, n, n) of the n x n output grid (row 0 anterior, column 0 the left side)."""
    axis = ((np.arange(n) + 0.5) / n - 0.5) * n * pixel_mm
    v, u = np.meshgrid(axis, axis, indexing="ij")  # v: rows (posterior is +), u: columns
    coarse = np.random.default_rng(subject.elastic_seed).normal(0.0, subject.elastic_mm, size=(2, 6, 6))
    knots, points = np.arange(6.0), np.linspace(0.0, 5.0, n)
    du, dv = (interpolate.RectBivariateSpline(knots, knots, coarse[k])(points, points) for k in (0, 1))
    a = subject.affine
    x = a[0] * (u + du) + a[1] * (v + dv) + subject.shift_mm[0] + BRAIN_CENTRE_MM[0]
    y = -(a[2] * (u + du) + a[3] * (v + dv)) + subject.shift_mm[1] + BRAIN_CENTRE_MM[1]
    z = subject.slice_mm + subject.tilt[0] * v + subject.tilt[1] * u
    inverse = np.linalg.inv(template.affine)
    mm = np.stack([x, y, z, np.ones_like(x)]).reshape(4, -1)
    return (inverse @ mm)[:3].reshape(3, n, n)


def _lesion_masks(radius_px: float, rim_width_px: float, offset: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Supersampled disc and ring coverage around one lesion centre (local window, in supersampled pixels)."""
    half = int(math.ceil(radius_px * SUPERSAMPLE)) + 2
    axis = np.arange(-half, half + 1) + 0.5
    rr, cc = np.meshgrid(axis - offset[0] * SUPERSAMPLE, axis - offset[1] * SUPERSAMPLE, indexing="ij")
    distance = np.hypot(rr, cc) / SUPERSAMPLE  # HR pixels
    disc = distance < radius_px
    ring = disc & (distance >= radius_px - rim_width_px)
    return disc.astype(np.float32), ring.astype(np.float32)


def lesion_drop(rim: bool, radius_px: float, rim_width_px: float, contrast: float,
                offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The fractional intensity drop of one lesion on the supersampled grid (local window).

    Rim: `contrast` on the ring. Solid: the disc at contrast x ring area / disc area, so both drop the same
    total intensity (mass) over the same outer radius."""
    disc, ring = _lesion_masks(radius_px, rim_width_px, offset)
    if rim:
        return contrast * ring
    return contrast * float(ring.sum()) / float(disc.sum()) * disc


def place_lesions(subject: Subject, white_matter: np.ndarray) -> list[Lesion]:
    """Lesion centres inside the white matter (HR probability map), not touching each other."""
    rng = np.random.default_rng(subject.lesion_seed)
    placed: list[Lesion] = []
    for radius, contrast in zip(subject.lesion_radii, subject.lesion_contrasts):
        reach = int(math.ceil(radius))
        footprint = np.hypot(*np.mgrid[-reach:reach + 1, -reach:reach + 1]) <= radius
        inside = ndimage.minimum_filter(white_matter, footprint=footprint, mode="constant") > WHITE_MATTER
        rows, cols = np.nonzero(inside)
        for _ in range(50):
            if not len(rows):
                break
            k = int(rng.integers(len(rows)))
            row, col = rows[k] + rng.uniform(0.2, 0.8), cols[k] + rng.uniform(0.2, 0.8)
            if all(math.hypot(row - o.row, col - o.col) >= radius + o.radius_px + LESION_GAP_PX for o in placed):
                placed.append(Lesion(row, col, float(radius), float(contrast)))
                break
    return placed


def render(subject: Subject, size: int, params: MniSource) -> tuple[np.ndarray, list[Lesion]]:
    """The slice as a float32 `size` x `size` array in [0, 1], and the lesions drawn into it."""
    template = load_template()
    n = size * ANATOMY_SUPERSAMPLE
    grid = _sample_grid(subject, n, FIELD_OF_VIEW_MM / n, template)
    t1, gm, wm = (_area(ndimage.map_coordinates(volume, grid, order=1, mode="constant", cval=0.0), size)
                  for volume in (template.t1, template.gm, template.wm))
    image = np.clip(t1, 0.0, 1.0) ** subject.gamma * (1.0 + subject.gm_wm_contrast * (wm - gm))
    lesions = place_lesions(subject, wm)
    image = image * (1.0 - _area(lesion_map(subject.rim, lesions, size, params.rim_width), size))
    return scanner_effects(image * subject.gain, subject.bias, subject.noise_seed, subject.noise_std), lesions


def lesion_map(rim: bool, lesions: list[Lesion], size: int, rim_width_px: float) -> np.ndarray:
    """The lesions' fractional intensity drop on the supersampled grid (size x SUPERSAMPLE square)."""
    n = size * SUPERSAMPLE
    drop = np.zeros((n, n), dtype=np.float32)
    for lesion in lesions:
        whole = (math.floor(lesion.row), math.floor(lesion.col))
        window = lesion_drop(rim, lesion.radius_px, rim_width_px, lesion.contrast,
                             offset=(lesion.row - whole[0] - 0.5, lesion.col - whole[1] - 0.5))
        half = window.shape[0] // 2
        r0 = whole[0] * SUPERSAMPLE + SUPERSAMPLE // 2 - half
        c0 = whole[1] * SUPERSAMPLE + SUPERSAMPLE // 2 - half
        rs, cs = slice(max(r0, 0), min(r0 + window.shape[0], n)), slice(max(c0, 0), min(c0 + window.shape[1], n))
        drop[rs, cs] += window[rs.start - r0:rs.stop - r0, cs.start - c0:cs.stop - c0]
    return np.clip(drop, 0.0, 1.0)


def _area(image: np.ndarray, size: int) -> np.ndarray:
    """Mean of each block: a supersampled square down to size x size."""
    k = image.shape[0] // size
    return image.reshape(size, k, size, k).mean(axis=(1, 3))


# --- the dataset -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MniImage:
    id: str
    split: str
    label: str
    image: np.ndarray
    subject: Subject
    lesions: tuple[Lesion, ...]


def generate(params: MniSource, image_size: int) -> Iterator[MniImage]:
    """Every image of the dataset, split by split, in id order."""
    for split in SPLITS:
        per_class = params.train_per_class if split == "train" else params.test_per_class
        for index in range(per_class):
            for label in CLASSES:
                subject = subject_for(params, split, label, index)
                image, lesions = render(subject, image_size, params)
                yield MniImage(image_id(split, label, index), split, label, image, subject, tuple(lesions))
