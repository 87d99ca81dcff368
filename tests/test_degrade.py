"""Eq. 1.1 degradation and bicubic upsampling: shapes, alignment, noise, the degrade stage's files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from medsr.core import io
from medsr.core.parameters import DegradeParams
from medsr.stages.degrade import degrade_image, downsample, run
from medsr.data.pixels import bicubic_upsample
from medsr.core.randomness import torch_generator as noise_generator
from medsr.core.errors import MedsrError

DEGRADE = DegradeParams(scale=2, blur_sigma=0.5, noise_std=0.01, seed=0)


def hr_set(root, n_per_split=2, size=32, seed=0):
    """A small HR image set (random smooth-ish images) with a manifest."""
    rng = np.random.default_rng(seed)
    records = []
    for split in ("train", "test"):
        for i in range(n_per_split):
            label = ("healthy", "unhealthy")[i % 2]
            image_id = f"{split}_{i:05d}"
            relative = io.relative_image_path(split, label, image_id)
            io.write_image(root / relative, rng.uniform(0.2, 0.8, (size, size)))
            records.append(io.Record(image_id, split, label, relative, io.sha256_file(root / relative), "t"))
    io.write_manifest(root, records)
    return records


def test_shapes_and_range():
    hr = torch.rand(3, 1, 64, 64)
    for scale in (2, 4):
        lr = degrade_image(hr, scale, 0.8, 0.05, torch.Generator().manual_seed(0))
        assert lr.shape == (3, 1, 64 // scale, 64 // scale)
        assert lr.min() >= 0 and lr.max() <= 1
        up = bicubic_upsample(lr, scale)
        assert up.shape == (3, 1, 64, 64)
        assert up.min() >= 0 and up.max() <= 1


def test_no_blur_no_noise_is_the_block_mean():
    hr = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    lr = degrade_image(hr, 2, 0.0, 0.0)
    expected = hr.reshape(1, 1, 4, 2, 4, 2).mean(dim=(3, 5))
    torch.testing.assert_close(lr, expected)
    # a constant image stays constant whatever the blur (reflected borders, normalized kernel)
    flat = torch.full((1, 1, 16, 16), 0.3)
    torch.testing.assert_close(degrade_image(flat, 2, 1.5, 0.0), torch.full((1, 1, 8, 8), 0.3))


def test_lr_grid_is_aligned_with_bicubic_upsampling():
    """A linear ramp survives degrade + bicubic unshifted (plain decimation would shift it by 0.5 px)."""
    ramp = torch.arange(32, dtype=torch.float32).div(40.0).expand(1, 1, 32, 32).contiguous()
    up = bicubic_upsample(degrade_image(ramp, 2, 0.0, 0.0), 2)
    interior = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    error = up[interior] - ramp[interior]
    # torch's cubic kernel (a = -0.75) ripples slightly around a ramp, but does not shift it
    assert abs(float(error.mean())) < 1e-4 and float(error.abs().max()) < 0.1 / 40
    decimated = bicubic_upsample(ramp[..., ::2, ::2], 2)
    shift = float((decimated[interior] - ramp[interior]).mean())
    assert shift == pytest.approx(-0.5 / 40, abs=1e-4)  # what plain decimation would do: half a pixel


def test_blur_removes_the_hr_nyquist_pattern():
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2
    checker = checker.float().expand(1, 1, 16, 16)
    lr = degrade_image(checker, 2, 0.5, 0.0)
    assert float(lr.std()) < 1e-5  # aliasing would turn the pattern into a false low-frequency image
    assert float(downsample(checker[..., ::1, :], 2).std()) < 1e-6


def test_noise_is_reproducible_per_image_and_has_the_requested_std():
    hr = torch.full((1, 1, 128, 128), 0.5)
    a = degrade_image(hr, 2, 0.5, 0.05, noise_generator(0, "train_00001"))
    b = degrade_image(hr, 2, 0.5, 0.05, noise_generator(0, "train_00001"))
    c = degrade_image(hr, 2, 0.5, 0.05, noise_generator(0, "train_00002"))
    d = degrade_image(hr, 2, 0.5, 0.05, noise_generator(1, "train_00001"))
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, d)
    assert abs(float((a - 0.5).std()) - 0.05) < 0.005


def test_run_writes_paired_lr_and_bicubic_sets(tmp_path):
    records = hr_set(tmp_path / "hr")
    run(DEGRADE, tmp_path / "hr", tmp_path / "lr", tmp_path / "bicubic")
    lr_records = io.read_manifest(tmp_path / "lr")
    bicubic_records = io.read_manifest(tmp_path / "bicubic")
    for derived in (lr_records, bicubic_records):
        assert [(r.id, r.split, r.label) for r in derived] == [(r.id, r.split, r.label) for r in records]
    for lr_record, bicubic_record in zip(lr_records, bicubic_records):
        lr = io.read_image(tmp_path / "lr" / lr_record.path)
        bicubic = io.read_image(tmp_path / "bicubic" / bicubic_record.path)
        assert lr.shape == (16, 16) and bicubic.shape == (32, 32)
        assert lr_record.sha256 == io.sha256_file(tmp_path / "lr" / lr_record.path)
        # the bicubic set is bicubic_upsample of the LR image as stored (8-bit)
        expected = bicubic_upsample(torch.from_numpy(lr)[None, None], 2)[0, 0].numpy()
        assert np.abs(bicubic - expected).max() <= 0.5 / 255 + 1e-6
    assert io.read_json(tmp_path / "lr" / "metadata.json")["noise_std"] == DEGRADE.noise_std


def test_run_is_reproducible_and_independent_of_order(tmp_path):
    records = hr_set(tmp_path / "hr", n_per_split=3)
    run(DEGRADE, tmp_path / "hr", tmp_path / "lr1", tmp_path / "bic1")
    io.write_manifest(tmp_path / "hr", list(reversed(records)))
    run(DEGRADE, tmp_path / "hr", tmp_path / "lr2", tmp_path / "bic2")
    first = {r.id: r.sha256 for r in io.read_manifest(tmp_path / "lr1")}
    second = {r.id: r.sha256 for r in io.read_manifest(tmp_path / "lr2")}
    assert first == second
    run(dataclasses.replace(DEGRADE, seed=1), tmp_path / "hr", tmp_path / "lr3", tmp_path / "bic3")
    assert {r.id: r.sha256 for r in io.read_manifest(tmp_path / "lr3")} != first


def test_missing_hr_folder_is_named(tmp_path):
    with pytest.raises(MedsrError, match="nowhere"):
        run(DEGRADE, tmp_path / "nowhere", tmp_path / "lr", tmp_path / "bicubic")
    assert not (tmp_path / "lr").exists()


def test_failure_leaves_no_partial_output_and_keeps_the_old_one(tmp_path):
    records = hr_set(tmp_path / "hr", n_per_split=3)
    run(DEGRADE, tmp_path / "hr", tmp_path / "lr", tmp_path / "bicubic")
    before = (tmp_path / "lr" / "manifest.csv").read_bytes()
    (tmp_path / "hr" / records[-1].path).write_bytes(b"not a png")  # the last image breaks the run
    with pytest.raises(MedsrError, match=records[-1].id):
        run(dataclasses.replace(DEGRADE, seed=5), tmp_path / "hr", tmp_path / "lr", tmp_path / "bicubic")
    assert (tmp_path / "lr" / "manifest.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bicubic", "hr", "lr"]  # no temporary folders left
    with pytest.raises(MedsrError):
        run(DEGRADE, tmp_path / "hr", tmp_path / "lr_new", tmp_path / "bicubic_new")
    assert not (tmp_path / "lr_new").exists() and not (tmp_path / "bicubic_new").exists()


def test_size_not_divisible_by_scale_is_an_error(tmp_path):
    hr_set(tmp_path / "hr", size=30)
    with pytest.raises(MedsrError, match="scale"):
        run(dataclasses.replace(DEGRADE, scale=4), tmp_path / "hr", tmp_path / "lr", tmp_path / "bicubic")


def test_hr_file_changed_after_download_is_refused_and_nothing_is_written(tmp_path):
    records = hr_set(tmp_path / "hr", n_per_split=3)
    run(DEGRADE, tmp_path / "hr", tmp_path / "lr", tmp_path / "bicubic")
    before = {p: p.read_bytes() for p in sorted((tmp_path / "lr").rglob("*")) if p.is_file()}
    changed = tmp_path / "hr" / records[2].path
    image = io.read_image(changed)
    image[4, 4] = 1.0 - image[4, 4]  # one pixel edited: still a valid PNG of the right size
    io.write_image(changed, image)
    for lr, bicubic in (("lr", "bicubic"), ("lr_new", "bicubic_new")):
        with pytest.raises(MedsrError) as err:
            run(dataclasses.replace(DEGRADE, seed=3), tmp_path / "hr", tmp_path / lr, tmp_path / bicubic)
        message = str(err.value)
        assert message.startswith(f"{changed}: content changed since the manifest was written (sha256 ")
        assert f"expected {records[2].sha256}); re-run the stage that wrote {tmp_path / 'hr'}" in message
        assert "\n" not in message
    assert not (tmp_path / "lr_new").exists() and not (tmp_path / "bicubic_new").exists()
    assert {p: p.read_bytes() for p in sorted((tmp_path / "lr").rglob("*")) if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bicubic", "hr", "lr"]  # no temporary folders left


# --- degrade.model kspace: x = |F^-1( W . C_s( P . F y ) ) + n| ----------------------------------

from medsr.stages.degrade import kspace_degrade  # noqa: E402


def band_limited(size: int, scale: int, seed: int = 0):
    """A positive image made of cosines below the LR Nyquist frequency, and the function it samples."""
    rng = np.random.default_rng(seed)
    low = size // scale
    terms = [(rng.integers(0, low // 2), rng.integers(0, low // 2), rng.uniform(0, 2 * np.pi), rng.uniform(0.02, 0.08))
             for _ in range(6)]

    def f(t_row, t_col):
        value = 0.5 + 0 * t_row * t_col
        for ky, kx, phase, amplitude in terms:
            value = value + amplitude * np.cos(2 * np.pi * (ky * t_row + kx * t_col) / size + phase)
        return value

    rows, cols = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    return f(rows, cols), f


@pytest.mark.parametrize("scale", [2, 4])
def test_kspace_passes_a_band_limited_image_unchanged_at_the_lr_pixel_centres(scale):
    """No noise, no window: the LR image is the band-limited image sampled at the centres of the s x s HR blocks
    (s i + (s - 1) / 2), the grid bicubic_upsample assumes; intensities keep their scale."""
    size = 32
    hr, f = band_limited(size, scale)
    lr = kspace_degrade(hr, scale, 0.0)
    centres = scale * np.arange(size // scale) + (scale - 1) / 2
    expected = f(centres[:, None], centres[None, :])
    np.testing.assert_allclose(lr, expected, atol=1e-5)  # float32 output of a float64 computation
    np.testing.assert_allclose(kspace_degrade(np.full((16, 16), 0.3), scale, 0.0), 0.3, atol=1e-6)


def test_kspace_removes_frequencies_above_the_lr_band():
    """A cosine at the HR Nyquist-side frequency (above h/2) leaves only its mean."""
    size, scale = 32, 2
    cols = np.arange(size)
    hr = np.tile(0.5 + 0.2 * np.cos(2 * np.pi * 12 * cols / size), (size, 1))  # 12 > h/2 = 8
    np.testing.assert_allclose(kspace_degrade(hr, scale, 0.0), 0.5, atol=1e-6)


def test_kspace_noise_magnitude_on_a_zero_image_is_rayleigh():
    """|n| of complex Gaussian noise with sigma per part on a zero image: Rayleigh, mean sigma sqrt(pi/2), variance
    (4 - pi)/2 sigma^2; the tolerance is 5 standard errors of the mean of N draws."""
    sigma, size, scale = 0.05, 256, 2
    rng = np.random.default_rng(0)
    magnitude = kspace_degrade(np.zeros((size, size)), scale, sigma, rng=rng).astype(np.float64).ravel()
    n = magnitude.size
    mean, var = sigma * np.sqrt(np.pi / 2), (4 - np.pi) / 2 * sigma ** 2
    assert abs(magnitude.mean() - mean) < 5 * np.sqrt(var / n)
    # second moment of a Rayleigh: E|n|^2 = 2 sigma^2 (standard error from E|n|^4 = 8 sigma^4)
    assert abs(np.mean(magnitude ** 2) - 2 * sigma ** 2) < 5 * np.sqrt((8 - 4) * sigma ** 4 / n)
    assert magnitude.min() >= 0


def test_kspace_noise_on_a_bright_image_is_rician_not_gaussian_clipped():
    """Signal A >> sigma: the Rician magnitude is close to Gaussian with mean sqrt(A^2 + sigma^2) and std sigma."""
    sigma, a = 0.02, 0.5
    magnitude = kspace_degrade(np.full((256, 256), a), 2, sigma, rng=np.random.default_rng(1)).astype(np.float64)
    n = magnitude.size
    assert abs(magnitude.mean() - np.sqrt(a ** 2 + sigma ** 2)) < 5 * sigma / np.sqrt(n) + 1e-6
    assert abs(magnitude.std() - sigma) < 0.05 * sigma


def test_kspace_window_reduces_ringing_at_an_edge():
    """A bar between two step edges (HR columns 7..22, LR 3.5..11): the Gibbs oscillation, measured as the mean
    deviation from the ideal bar two or more LR pixels away from the edges, shrinks with the Tukey window and
    more with the Hamming window."""
    hr = np.zeros((32, 32))
    hr[:, 7:23] = 0.8
    ideal = np.zeros(16)
    ideal[4:11] = 0.8
    far = np.r_[0:2, 6:9, 13:16]
    ringing = {w: np.abs(kspace_degrade(hr, 2, 0.0, w)[0] - ideal)[far].mean() for w in ("none", "tukey", "hamming")}
    assert ringing["none"] > ringing["tukey"] > ringing["hamming"]


def test_degrade_stage_kspace_records_its_model_and_keeps_the_lr_size(tmp_path):
    hr_set(tmp_path / "hr")
    params = dataclasses.replace(DEGRADE, model="kspace", kspace_window="tukey")
    run(params, tmp_path / "hr", tmp_path / "lr", tmp_path / "bicubic")
    meta = json.loads((tmp_path / "lr" / "metadata.json").read_text())
    assert meta["model"] == "kspace" and meta["window"] == "tukey" and meta["blur_sigma"] == "unused by kspace"
    assert json.loads((tmp_path / "bicubic" / "metadata.json").read_text())["model"] == "kspace"
    lr = io.load_images(tmp_path / "lr", io.read_manifest(tmp_path / "lr"))
    assert lr.shape[1:] == (16, 16)
    assert io.load_images(tmp_path / "bicubic", io.read_manifest(tmp_path / "bicubic")).shape[1:] == (32, 32)
    gaussian = tmp_path / "g"
    run(DEGRADE, tmp_path / "hr", gaussian / "lr", gaussian / "bicubic")
    assert json.loads((gaussian / "lr" / "metadata.json").read_text())["model"] == "gaussian"
    assert not np.array_equal(lr, io.load_images(gaussian / "lr", io.read_manifest(gaussian / "lr")))
