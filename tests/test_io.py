"""Outputs are written atomically: an interrupted stage never leaves a file that looks complete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medsr.core.errors import MedsrError
from medsr.core.io import (Record, atomic_dir, atomic_path, load_images, read_image, read_manifest, read_record_image,
                      sha256_file, write_image, write_json, write_manifest)


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"ok": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_atomic_dir_replaces_a_folder_only_when_complete(tmp_path):
    target = tmp_path / "set"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("partial")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    with atomic_dir(target) as tmp:
        (tmp / "c.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_images_round_trip_on_the_8bit_path(tmp_path):
    image = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    write_image(tmp_path / "x.png", image)
    back = read_image(tmp_path / "x.png")
    assert back.dtype == np.float32 and back.shape == (8, 8)
    assert np.abs(back - image).max() <= 0.5 / 255 + 1e-6
    write_image(tmp_path / "y.png", image * 3 - 1)  # out-of-range values are clamped, not rescaled
    assert read_image(tmp_path / "y.png").min() == 0.0 and read_image(tmp_path / "y.png").max() == 1.0


def test_unreadable_image_error_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(MedsrError, match="broken.png: unreadable image"):
        read_image(bad)
    with pytest.raises(MedsrError, match="gone.png: image file not found"):
        read_image(tmp_path / "gone.png")


def test_manifest_errors_name_the_folder(tmp_path):
    with pytest.raises(MedsrError, match="data folder is missing"):
        read_manifest(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedsrError, match="manifest is missing"):
        read_manifest(tmp_path / "empty")
    write_manifest(tmp_path / "empty", [])
    with pytest.raises(MedsrError, match="the data folder is empty"):
        read_manifest(tmp_path / "empty")
    write_manifest(tmp_path / "one", [Record("a", "train", "healthy", "train/healthy/a.png")])
    with pytest.raises(MedsrError, match="no test images"):
        read_manifest(tmp_path / "one", split="test")


def test_read_record_image_checks_the_bytes_against_the_manifest_hash(tmp_path, monkeypatch):
    image = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    write_image(tmp_path / "a.png", image)
    digest = sha256_file(tmp_path / "a.png")
    np.testing.assert_array_equal(read_record_image(tmp_path, Record("a", "train", "healthy", "a.png", digest)),
                                  read_image(tmp_path / "a.png"))
    reads = []
    original = Path.read_bytes

    def counting(self):
        reads.append(self)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    read_record_image(tmp_path, Record("a", "train", "healthy", "a.png", digest))
    assert reads == [tmp_path / "a.png"]  # read once: hashed and decoded from the same bytes
    monkeypatch.undo()
    unchecked = Record("a", "train", "healthy", "a.png")  # no sha256 in the manifest: nothing to check
    write_image(tmp_path / "a.png", 1 - image)
    np.testing.assert_allclose(read_record_image(tmp_path, unchecked), 1 - image, atol=0.5 / 255)
    with pytest.raises(MedsrError, match=r"a\.png: content changed since the manifest was written") as err:
        load_images(tmp_path, [Record("a", "train", "healthy", "a.png", digest)])
    assert f"expected {digest}); re-run the stage that wrote {tmp_path}" in str(err.value)


def test_the_same_training_state_gives_the_same_bytes_under_any_file_name(tmp_path):
    """A rerun must reproduce its checkpoints bit for bit: the atomic write's random temporary name must not leak
    into the file (torch.save names a zip's root folder after a path's stem)."""
    import torch

    from medsr.core.model_files import load_training_state, save_training_state

    state = {"step": 3, "config": {"lr": 0.1}, "weights": torch.arange(6.0).reshape(2, 3), "rng": [1, 2]}
    save_training_state(tmp_path / "a.pt", state)
    save_training_state(tmp_path / "other_name.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "other_name.pt").read_bytes()
    loaded = load_training_state(tmp_path / "a.pt")
    assert loaded["step"] == 3 and torch.equal(loaded["weights"], state["weights"])
