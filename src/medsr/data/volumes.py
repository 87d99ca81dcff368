"""Volume sources (data.source nifti | dicom): 3-D scans plus a CSV `subject,label`, cut into labelled 2-D slices.

Readers: nibabel (NIfTI-1/2, .nii and .nii.gz) and pydicom (DICOM series). They are the field's reference
readers, small and pure Python, and nibabel's affine handling (`as_closest_canonical`) is what orientation
needs; MONAI's LoadImage wraps the same two libraries behind a large framework we would not otherwise use.

Per volume (data.volumes):
1. reorientation to the closest canonical orientation, RAS+ (nibabel.as_closest_canonical: axis permutations and
   flips only, no resampling; an oblique affine goes to its nearest RAS axes, recorded in the slice's source);
2. intensity window per volume: the `percentiles` [low, high] of the voxels map to [0, 1], clipped;
3. slices along `axis` within `slice_range` (shares of the axis) whose foreground (normalised intensity > 0.1)
   covers at least `min_brain_fraction` of the slice are candidates; `slices_per_subject` of them, evenly
   spaced, are kept;
4. each slice is shown radiologically-neutral with the anterior (axial, sagittal) or superior (coronal) side up,
   resampled to square pixels from the voxel spacing, and fitted to data.image_size like any source image.

DICOM: the files of `<path>/<subject>/` (any depth) are grouped by SeriesInstanceUID, sorted along the slice
normal (ImageOrientationPatient x ImagePositionPatient), rescaled by RescaleSlope / RescaleIntercept, and given the
affine of the DICOM standard (PS3.3 C.7.6.2.1.1) in LPS, turned into RAS by negating x and y.

A problem with one volume (unreadable file, no candidate slice, a subject of the CSV without files) is a one-line
MedsrError naming the file, or, with data.on_bad_image: skip, a row of skipped.csv.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from medsr.core.parameters import CLASSES, DataParams, VolumeSource
from medsr.data.sources import _resize, fit_to_size
from medsr.core.errors import MedsrError
from medsr.core.io import read_csv

FOREGROUND = 0.1  # normalised intensity above which a pixel counts as foreground (brain or head)
AXES = {"sagittal": 0, "coronal": 1, "axial": 2}  # RAS+ voxel axes after as_closest_canonical
NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclasses.dataclass(frozen=True)
class Slice:
    subject: str
    label: str  # healthy | unhealthy
    image: np.ndarray  # fitted to data.image_size, [0, 1]
    source: str  # <file>#<axis>=<index> (+ "oblique" when the affine was not axis-aligned)


@dataclasses.dataclass(frozen=True)
class Volume:
    array: np.ndarray  # 3-D, float32, RAS+ voxel axes
    spacing: tuple[float, float, float]  # mm along the three axes
    oblique: bool
    path: Path  # the file (nifti) or folder (dicom) it came from


# --- subjects -------------------------------------------------------------------------------

def subjects(data: DataParams) -> list[tuple[str, str]]:
    """(subject, healthy | unhealthy) rows of the CSV, in its order; checked for columns, labels and repeats."""
    volumes = data.volumes
    if not volumes.path:
        raise MedsrError(f"data.volumes.path: empty; set it to the folder of the {data.source} volumes")
    root = Path(volumes.path).expanduser()
    if not root.is_dir():
        raise MedsrError(f"{root}: data folder is missing (data.volumes.path)")
    csv_path = Path(volumes.subjects_csv).expanduser() if volumes.subjects_csv else root / "subjects.csv"
    if not csv_path.is_file():
        raise MedsrError(f"{csv_path}: subjects CSV is missing (columns subject,label; data.volumes.subjects_csv)")
    rows = read_csv(csv_path)
    if not rows or not {"subject", "label"} <= set(rows[0]):
        raise MedsrError(f"{csv_path}: needs the columns subject,label and at least one row")
    out, seen = [], set()
    for line, row in enumerate(rows, start=2):
        subject, label = (row.get("subject") or "").strip(), (row.get("label") or "").strip()
        mapped = label if label in CLASSES else data.class_map.get(label)
        if not subject or mapped is None:
            raise MedsrError(f"{csv_path}: line {line}: needs a subject and a label that is healthy, unhealthy or a "
                             f"data.class_map key, got {subject!r}, {label!r}")
        if subject in seen:
            raise MedsrError(f"{csv_path}: line {line}: subject {subject!r} is listed twice")
        if Path(subject).name != subject or subject.startswith("."):
            raise MedsrError(f"{csv_path}: line {line}: subject {subject!r} must be a plain file or folder name")
        seen.add(subject)
        out.append((subject, mapped))
    return out


def _nifti_files(root: Path, subject: str) -> list[Path]:
    files = [root / f"{subject}{suffix}" for suffix in NIFTI_SUFFIXES if (root / f"{subject}{suffix}").is_file()]
    folder = root / subject
    if folder.is_dir():
        files += sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(NIFTI_SUFFIXES)
                        and not p.name.startswith("."))
    return files


def subject_inputs(data: DataParams, subject: str) -> list[Path]:
    """The volume files (nifti) or the one folder (dicom) of `subject`; a MedsrError naming what is missing."""
    root = Path(data.volumes.path).expanduser()
    if data.source == "nifti":
        files = _nifti_files(root, subject)
        if not files:
            raise MedsrError(f"{root / subject}.nii.gz: subject {subject!r} of the subjects CSV has no volume "
                             f"({subject}.nii[.gz] or {subject}/*.nii[.gz])")
        return files
    folder = root / subject
    if not folder.is_dir() or not any(p.is_file() for p in folder.rglob("*")):
        raise MedsrError(f"{folder}: subject {subject!r} of the subjects CSV has no DICOM folder")
    return [folder]


# --- reading --------------------------------------------------------------------------------

def _canonical(image, path: Path) -> Volume:
    import nibabel as nib

    affine = np.asarray(image.affine, dtype=np.float64)
    direction = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    oblique = not np.allclose(np.abs(direction).max(axis=0), 1.0, atol=1e-3)  # some voxel axis not along x, y or z
    canonical = nib.as_closest_canonical(image)
    array = np.asarray(canonical.dataobj, dtype=np.float32)
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise MedsrError(f"{path}: expected a 3-D volume, got shape {array.shape}")
    spacing = tuple(float(z) for z in canonical.header.get_zooms()[:3])
    return Volume(array, spacing, oblique, path)


def read_nifti(path: Path) -> Volume:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        return _canonical(image, path)
    except MedsrError:
        raise
    except Exception as err:  # nibabel raises ImageFileError, OSError, EOFError, zlib errors ...
        raise MedsrError(f"{path}: unreadable NIfTI volume ({type(err).__name__}: {err})") from err


def read_dicom_series(folder: Path) -> Volume:
    """The series in `folder` (the first by SeriesInstanceUID when there are several, named in the source)."""
    import nibabel as nib
    import pydicom

    datasets = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        try:
            ds = pydicom.dcmread(path)
            ds.pixel_array  # decoded now, so a damaged file is named here
        except Exception as err:  # pydicom raises InvalidDicomError, ValueError, OSError, AttributeError ...
            raise MedsrError(f"{path}: unreadable DICOM file ({type(err).__name__}: {err})") from err
        datasets.append((path, ds))
    if not datasets:
        raise MedsrError(f"{folder}: no DICOM files")
    series = sorted({str(ds.get("SeriesInstanceUID", "")) for _, ds in datasets})
    datasets = [(p, ds) for p, ds in datasets if str(ds.get("SeriesInstanceUID", "")) == series[0]]
    try:
        orientation = np.array([float(v) for v in datasets[0][1].ImageOrientationPatient])
        row, col = orientation[:3], orientation[3:]
        normal = np.cross(row, col)
        positions = [np.array([float(v) for v in ds.ImagePositionPatient]) for _, ds in datasets]
        spacing_rc = [float(v) for v in datasets[0][1].PixelSpacing]  # [row spacing, column spacing]
    except (AttributeError, ValueError, TypeError) as err:
        raise MedsrError(f"{datasets[0][0]}: DICOM slice lacks ImageOrientationPatient / ImagePositionPatient / "
                         f"PixelSpacing ({err})") from err
    order = np.argsort([p @ normal for p in positions], kind="stable")
    slices = []
    for k in order:
        path, ds = datasets[k]
        pixels = ds.pixel_array.astype(np.float32)
        if pixels.shape != datasets[order[0]][1].pixel_array.shape:
            raise MedsrError(f"{path}: slice size {pixels.shape} differs from the rest of the series")
        slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
        slices.append(pixels * slope + intercept)
    array = np.stack(slices, axis=-1).transpose(1, 0, 2)  # voxel (i = column, j = row, k = slice)
    first = positions[order[0]]
    step = (positions[order[-1]] - first) / (len(order) - 1) if len(order) > 1 else normal * float(
        datasets[0][1].get("SliceThickness", 1) or 1)
    affine = np.eye(4)  # PS3.3 C.7.6.2.1.1: x = IPP + i * col_spacing * row_cosine + j * row_spacing * col_cosine
    affine[:3, 0] = row * spacing_rc[1]
    affine[:3, 1] = col * spacing_rc[0]
    affine[:3, 2] = step
    affine[:3, 3] = first
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # LPS (DICOM) -> RAS (NIfTI)
    source = folder if len(series) == 1 else Path(f"{folder}#series={series[0]}")
    return _canonical(nib.Nifti1Image(array, affine), source)


# --- slices ---------------------------------------------------------------------------------

def normalise(array: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """Map the [low, high] percentiles of the volume's voxels to [0, 1], clipped."""
    low, high = np.percentile(array, percentiles)
    if not np.isfinite([low, high]).all() or high <= low:
        return np.zeros_like(array, dtype=np.float32)
    return np.clip((array - low) / (high - low), 0.0, 1.0).astype(np.float32)


def candidate_slices(volume: np.ndarray, params: VolumeSource) -> list[int]:
    """Indices along the axis, inside slice_range, whose foreground share reaches min_brain_fraction."""
    axis = AXES[params.axis]
    n = volume.shape[axis]
    lo, hi = int(np.floor(params.slice_range[0] * n)), int(np.ceil(params.slice_range[1] * n))
    fractions = (np.moveaxis(volume, axis, 0) > FOREGROUND).mean(axis=(1, 2))
    return [k for k in range(lo, min(hi, n)) if fractions[k] >= params.min_brain_fraction and fractions[k] > 0]


def pick(candidates: list[int], count: int) -> list[int]:
    """`count` evenly spaced members of `candidates`: the middle one of each of `count` equal runs (all of them
    when there are fewer)."""
    n = len(candidates)
    if n <= count:
        return list(candidates)
    return [candidates[(2 * i + 1) * n // (2 * count)] for i in range(count)]


def slice_image(volume: Volume, axis: str, index: int) -> np.ndarray:
    """One slice as an image: anterior (or superior, for coronal) up, square pixels."""
    a = AXES[axis]
    plane = np.take(volume.array, index, axis=a)  # remaining RAS axes in order: (first, second)
    spacing = [s for i, s in enumerate(volume.spacing) if i != a]
    image = np.flipud(plane.T)  # rows: second axis, high (anterior / superior) at the top; columns: first axis
    height, width = image.shape
    row_mm, col_mm = spacing[1], spacing[0]
    if row_mm > 0 and col_mm > 0 and not np.isclose(row_mm, col_mm):
        finest = min(row_mm, col_mm)
        image = _resize(image, max(1, round(width * col_mm / finest)), max(1, round(height * row_mm / finest)))
    return np.ascontiguousarray(image, dtype=np.float32)


def volume_slices(data: DataParams, subject: str, label: str, volume: Volume) -> list[Slice]:
    params = data.volumes
    normalised = dataclasses.replace(volume, array=normalise(volume.array, params.percentiles))
    chosen = pick(candidate_slices(normalised.array, params), params.slices_per_subject)
    if not chosen:
        raise MedsrError(f"{volume.path}: no {params.axis} slice in data.volumes.slice_range "
                         f"{list(params.slice_range)} has a foreground share >= data.volumes.min_brain_fraction "
                         f"{params.min_brain_fraction}")
    suffix = ",oblique" if volume.oblique else ""
    return [Slice(subject, label, fit_to_size(slice_image(normalised, params.axis, k), data.image_size, data.resize),
                  f"{volume.path}#{params.axis}={k}{suffix}") for k in chosen]


def read_slices(data: DataParams, subject: str, label: str, path: Path) -> list[Slice]:
    """The slices of one volume of `subject` (a MedsrError names the bad file or folder)."""
    volume = read_nifti(path) if data.source == "nifti" else read_dicom_series(path)
    return volume_slices(data, subject, label, volume)
