"""Tiny NIfTI volumes and DICOM series written for the tests (nibabel / pydicom), with a subjects CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

SHAPE = (24, 24, 12)  # RAS voxel axes: x (right), y (anterior), z (superior)


def head(unhealthy: bool, seed: int, shape=SHAPE, peak: float = 1000.0) -> np.ndarray:
    """An ellipsoidal 'head' (size and position vary by subject) filling the middle slices, a dark 'ventricle'
    (larger when unhealthy), a bright marker at the right-anterior corner so orientation errors show, random
    texture per subject."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    ax, ay = rng.uniform(0.55, 0.85, 2)
    x0, y0 = rng.uniform(-0.1, 0.1, 2)
    r = ((x - x0) / ax) ** 2 + ((y - y0) / ay) ** 2 + (z / 0.75) ** 2
    volume = np.where(r < 1, 0.5 + 0.3 * rng.random(shape), 0.0)
    ventricle = ((x - x0) / (0.3 if unhealthy else 0.12)) ** 2 + ((y - y0) / 0.25) ** 2 + (z / 0.4) ** 2 < 1
    volume[ventricle] = 0.2
    volume[shape[0] - 6:shape[0] - 3, shape[1] - 6:shape[1] - 3, :] = 1.0  # right, anterior
    return (volume * peak).astype(np.float32)


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject", "label"])
        writer.writerows(rows)


def write_nifti(path: Path, volume: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine), str(path))
    return path


def _dataset(root: Path, per_class: int, write) -> list[tuple[str, str]]:
    """`per_class` healthy and unhealthy subjects sub-00, sub-01, ... written by `write(root, subject, unhealthy,
    seed)`, plus <root>/subjects.csv."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(2 * per_class):
        subject, label = f"sub-{k:02d}", ("healthy", "unhealthy")[k % 2]
        write(root, subject, label == "unhealthy", k)
        rows.append((subject, label))
    write_csv(root / "subjects.csv", rows)
    return rows


def nifti_dataset(root: Path, per_class: int = 3) -> list[tuple[str, str]]:
    """Subjects as <root>/<subject>.nii.gz plus subjects.csv."""
    return _dataset(root, per_class, lambda r, subject, unhealthy, k:
                    write_nifti(r / f"{subject}.nii.gz", head(unhealthy, seed=k)))


def write_dicom_series(folder: Path, volume: np.ndarray, spacing=(1.0, 1.0, 2.0), slope: float = 1.0,
                       intercept: float = 0.0) -> list[Path]:
    """A 16-bit (unsigned) MR series, one file per axial slice, standard axial orientation: volume[x, y, z] in RAS
    becomes DICOM rows along posterior (LPS +y = RAS -y) and columns along left (LPS +x = RAS -x)."""
    folder.mkdir(parents=True, exist_ok=True)
    series, study = generate_uid(), generate_uid()
    stored = np.clip(np.rint((volume - intercept) / slope), 0, 65535).astype(np.uint16)
    paths = []
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.Modality = series, study, "MR"
        ds.PatientID = folder.name
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]  # rows along LPS +x, columns along LPS +y
        # RAS voxel (i, j) of the volume -> DICOM pixel (row r, column c): c runs along LPS +x = RAS -x,
        # r along LPS +y = RAS -y; the first pixel sits at the RAS (+x, +y) corner
        plane = stored[::-1, ::-1, k].T  # [row = -y, column = -x]
        nx, ny = volume.shape[:2]
        ds.ImagePositionPatient = [-(nx - 1) * spacing[0], -(ny - 1) * spacing[1], k * spacing[2]]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.InstanceNumber = k + 1
        ds.PixelData = np.ascontiguousarray(plane).tobytes()
        path = folder / f"slice{volume.shape[2] - 1 - k:03d}.dcm"  # file names in reverse order of position
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def dicom_dataset(root: Path, per_class: int = 3) -> list[tuple[str, str]]:
    """Subjects as one DICOM series per <root>/<subject>/ plus subjects.csv."""
    return _dataset(root, per_class, lambda r, subject, unhealthy, k:
                    write_dicom_series(r / subject, head(unhealthy, seed=k, peak=4000.0)))
