"""The embedded default dataset (data.source: mni): MNI152 slices whose class is only in the lesions' morphology."""

from __future__ import annotations

import dataclasses
import functools
import socket

import numpy as np
import pytest
from scipy import ndimage, stats

from medsr.core import io
from medsr.core.config import load_params
from medsr.core.parameters import CLASSES
from medsr.data import mni
from medsr.stages import download
from project import ROOT

SIZE = 64  # the default image size: the lesion geometry is defined in its HR pixels


@functools.cache
def default_params():
    return load_params([ROOT / "params.yaml"])


def mni_params(**changes):
    return dataclasses.replace(default_params().data.mni, **changes)


def test_mni_is_the_default_source_at_64_pixels_with_500_images_per_class_and_split():
    data = default_params().data
    assert data.source == "mni" and data.image_size == 64
    assert (data.mni.train_per_class, data.mni.test_per_class) == (500, 500)


def test_the_template_is_read_from_the_installed_package_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the template load opened a socket")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    mni.load_template.cache_clear()
    template = mni.load_template()
    assert "site-packages" in str(mni.template_folder()) or "dist-packages" in str(mni.template_folder())
    assert template.t1.shape == template.wm.shape == template.gm.shape and template.t1.shape[2] > 40
    assert 0.0 <= template.t1.min() and template.t1.max() <= 1.0 and template.wm.max() > 0.9


def test_an_image_is_a_function_of_seed_split_label_index_only():
    small, large = mni_params(train_per_class=1, test_per_class=1), mni_params(train_per_class=3, test_per_class=2)
    first = {item.id: item.image for item in mni.generate(small, SIZE)}
    second = {item.id: item.image for item in mni.generate(large, SIZE)}
    assert len(first) == 4 and len(second) == 10
    for image_id, image in first.items():
        assert np.array_equal(image, second[image_id]), image_id  # same bytes whatever the dataset size
    again, _ = mni.render(mni.subject_for(small, "train", "unhealthy", 0), SIZE, small)
    assert np.array_equal(again, first["train_00001"])
    other_seed, _ = mni.render(mni.subject_for(mni_params(seed=1), "train", "unhealthy", 0), SIZE, small)
    assert np.abs(other_seed - again).mean() > 0.02


def test_images_are_brain_slices_in_the_unit_range():
    params = mni_params(train_per_class=2, test_per_class=1)
    for item in mni.generate(params, SIZE):
        image = item.image
        assert image.dtype == np.float32 and image.shape == (SIZE, SIZE)
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert image.std() > 0.15, item.id  # a brain on a dark background, not blank
        assert image[:4, :4].mean() < 0.1 < 0.4 < image[24:40, 24:40].mean()  # dark corner, bright brain centre
        assert (image >= 1.0).mean() < 0.01  # not clipped
        assert len(item.lesions) >= params.lesion_count[0] - 1, item.id  # nearly every drawn lesion finds room


def test_the_classes_differ_only_inside_the_lesions():
    """The same subject drawn with rim lesions and with solid ones: equal outside the lesions, equal mass inside."""
    params = mni_params()
    subject = mni.subject_for(params, "test", "healthy", 3)
    solid, lesions = mni.render(subject, SIZE, params)
    rim, rim_lesions = mni.render(dataclasses.replace(subject, rim=True), SIZE, params)
    assert lesions == rim_lesions and len(lesions) >= 3
    footprint = np.zeros((SIZE, SIZE), dtype=bool)
    for lesion in lesions:
        rows, cols = np.mgrid[:SIZE, :SIZE] + 0.5
        footprint |= np.hypot(rows - lesion.row, cols - lesion.col) < lesion.radius_px + 1.0
    assert np.array_equal(solid[~footprint], rim[~footprint])
    assert np.abs(solid[footprint] - rim[footprint]).max() > 0.05  # the morphology does differ
    drops = [mni.lesion_map(kind, lesions, SIZE, params.rim_width) for kind in (False, True)]
    assert drops[0].sum() == pytest.approx(drops[1].sum(), rel=1e-4)  # same mass
    for lesion in lesions:  # at each centre the solid lesion is dark and the rim lesion's core untouched
        centre = int(lesion.row * mni.SUPERSAMPLE), int(lesion.col * mni.SUPERSAMPLE)
        assert drops[0][centre] > 0.1 and drops[1][centre] == 0.0


def test_both_classes_draw_lesions_from_the_same_distributions():
    """Count, radius, contrast and total mass of the placed lesions: the classes are indistinguishable."""
    params = mni_params()
    measures = {label: {"count": [], "radius": [], "mass": []} for label in CLASSES}
    template = mni.load_template()
    for label in CLASSES:
        for index in range(60):
            subject = mni.subject_for(params, "train", label, index)
            n = SIZE * mni.ANATOMY_SUPERSAMPLE
            grid = mni._sample_grid(subject, n, mni.FIELD_OF_VIEW_MM / n, template)
            wm = mni._area(ndimage.map_coordinates(template.wm, grid, order=1), SIZE)
            lesions = mni.place_lesions(subject, wm)
            measures[label]["count"].append(len(lesions))
            measures[label]["radius"] += [lesion.radius_px for lesion in lesions]
            measures[label]["mass"].append(float(mni.lesion_map(subject.rim, lesions, SIZE, params.rim_width).sum()))
    for name in ("count", "radius", "mass"):
        healthy, unhealthy = (np.asarray(measures[label][name]) for label in CLASSES)
        assert stats.ks_2samp(healthy, unhealthy, method="asymp").pvalue > 0.01, name
        assert abs(healthy.mean() - unhealthy.mean()) < 0.15 * healthy.mean(), name
    assert min(measures["healthy"]["count"]) >= params.lesion_count[0] - 2
    assert max(measures["unhealthy"]["count"]) <= params.lesion_count[1]


@pytest.mark.parametrize("radius", [1.5, 2.5, 3.5])
def test_the_knob_sets_the_outer_radius_and_the_rim_leaves_a_hole(radius):
    """lesion_radius is the outer radius in HR pixels; the rim is rim_width thick around an untouched core."""
    width = 1.0
    rim = mni.lesion_drop(True, radius, width, 0.5)
    solid = mni.lesion_drop(False, radius, width, 0.5)
    half = rim.shape[0] // 2
    axis = (np.arange(rim.shape[0]) - half + 0.5) / mni.SUPERSAMPLE  # supersampled pixel centres, HR pixels
    distance = np.hypot(*np.meshgrid(axis, axis, indexing="ij"))
    assert distance[solid > 0].max() == pytest.approx(radius, abs=0.5 / mni.SUPERSAMPLE)
    assert distance[rim > 0].max() == pytest.approx(radius, abs=0.5 / mni.SUPERSAMPLE)
    assert distance[rim > 0].min() == pytest.approx(radius - width, abs=0.5 / mni.SUPERSAMPLE)
    assert rim.max() == pytest.approx(0.5) and solid.max() < 0.5  # the rim concentrates the same mass
    assert rim.sum() == pytest.approx(solid.sum(), rel=1e-5)


def test_the_knob_scales_the_drawn_lesions():
    small, large = mni_params(lesion_radius=1.5), mni_params(lesion_radius=3.5)
    jitter = small.lesion_radius_jitter
    for index in range(5):
        a = mni.subject_for(small, "train", "unhealthy", index)
        b = mni.subject_for(large, "train", "unhealthy", index)
        assert np.allclose(np.array(b.lesion_radii) / np.array(a.lesion_radii), 3.5 / 1.5)
        assert all(1.5 * (1 - jitter) <= r <= 1.5 * (1 + jitter) for r in a.lesion_radii)


def test_download_writes_the_mni_source(tmp_path):
    data = dataclasses.replace(default_params().data, image_size=32,
                               mni=mni_params(train_per_class=4, test_per_class=1))
    download.run(data, tmp_path / "hr")
    records = io.read_manifest(tmp_path / "hr")
    assert {r.source for r in records} == {"mni"}
    assert sorted({(r.split, r.label) for r in records}) == sorted(
        (split, label) for split in ("train", "val", "test") for label in CLASSES)
    summary = io.read_json(tmp_path / "hr" / download.SUMMARY)
    assert summary["source"] == "mni" and summary["params"]["lesion_radius"] == data.mni.lesion_radius
    assert summary["counts"]["test"] == {"healthy": 1, "unhealthy": 1}
    files = summary["template"]["files"]
    assert set(files) == set(mni.TEMPLATE_FILES.values()) and all(len(sha) == 64 for sha in files.values())
