"""Matte scenes recomposited from rendered subjects over other scenes' photos."""

import numpy as np
import pytest

from genpercept_bundle import GenPerceptError
from genpercept_bundle.cli import main
from genpercept_bundle.data.dataset import Sample, read_sample, sample_ids, write_sample
from genpercept_bundle.data.recomposite import estimate_foreground, recomposite_subjects


def _scene_set(root, scenes):
    for scene_id, (rgb, alpha) in scenes.items():
        write_sample(root, "train", Sample(scene_id, rgb, alpha=alpha))
    (root / "dataset.json").write_text('{"format": "genpercept-dataset", "version": 1, "zero_depth": "sky"}')
    return root


def _subject_over(background_colour, alpha):
    """A red subject (soft at its left edge) over a plain background."""
    rgb = alpha[..., None] * np.array([220.0, 20, 20]) + (1 - alpha[..., None]) * np.array(background_colour)
    return rgb.round().astype(np.uint8)


def test_each_subject_goes_over_subject_free_photos_with_its_own_alpha(tmp_path):
    alpha = np.zeros((24, 32), np.float32)
    alpha[6:18, 10:20] = 1.0
    alpha[6:18, 8:10] = 0.5  # a soft edge
    subjects = _scene_set(tmp_path / "subjects", {"a": (_subject_over([0, 200, 0], alpha), alpha)})
    blue = np.zeros((24, 32, 3), np.uint8)
    blue[..., 2] = 230
    backgrounds = _scene_set(tmp_path / "backgrounds", {"plain": (blue, np.zeros((24, 32), np.float32)),
                                                       "with-subject": (blue, alpha)})
    assert main(["recomposite", str(tmp_path / "out"), "--subjects", str(subjects), "--backgrounds",
                 str(backgrounds), "--copies", "3"]) == 0
    assert sample_ids(tmp_path / "out", "train") == ["a-0", "a-1", "a-2"]
    for scene_id in ("a-0", "a-1", "a-2"):
        scene = read_sample(tmp_path / "out", "train", scene_id)
        matte = scene.alpha
        assert np.allclose(matte, alpha, atol=1e-3) or np.allclose(matte, alpha[:, ::-1], atol=1e-3)
        outside, inside = matte == 0, matte > 0.99
        assert np.all(scene.rgb[outside] == [0, 0, 230])  # the new background, never the old green
        assert np.all(np.abs(scene.rgb[inside].astype(int) - [220, 20, 20]) <= 1)
        soft = (matte > 0.4) & (matte < 0.6)
        assert np.all(scene.rgb[soft][:, 1] < 40)  # no green of the old background in the soft edge


def test_foreground_colour_comes_from_the_opaque_neighbours():
    alpha = np.zeros((16, 16), np.float32)
    alpha[:, 8:] = 1.0
    alpha[:, 6:8] = 0.3
    foreground = estimate_foreground(_subject_over([0, 255, 0], alpha), alpha)
    assert np.allclose(foreground[:, 6:8], [220, 20, 20], atol=4)  # the soft pixels weigh alpha**4: a trace of green


def test_needs_subjects_and_backgrounds(tmp_path, capsys):
    empty = np.zeros((8, 8), np.float32)
    plain = _scene_set(tmp_path / "plain", {"p": (np.zeros((8, 8, 3), np.uint8), empty)})
    with pytest.raises(GenPerceptError, match="scenes with a subject"):
        recomposite_subjects(plain, [plain], tmp_path / "out", copies=2)
    assert main(["recomposite", str(tmp_path / "out"), "--subjects", str(plain), "--backgrounds", str(plain)]) != 0
    assert "scenes with a subject (0 found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
