"""Typed model settings: the release's values by default, a settings file checked before anything loads."""

import json

import pytest

from genpercept_bundle import GenPerceptError
from genpercept_bundle.models.folders import DEFAULT_MODEL_DIR, open_model_folder
from genpercept_bundle.models.settings import SETTINGS_NAME, ModelSettings


def test_release_values_without_a_settings_file(tiny_model):
    settings = open_model_folder(tiny_model).settings
    assert settings == ModelSettings()
    assert settings.processing_resolution("depth") == 768 and settings.timestep == 1 and settings.flip_average_tasks == ()


def test_the_embedded_model_processes_each_task_at_its_training_size():
    settings = ModelSettings.of_folder(DEFAULT_MODEL_DIR)
    assert settings.processing_resolution("depth") == 256 and settings.processing_resolution("matting") == 192
    assert settings.flip_average_tasks == ("depth", "normal", "matte") and settings.recipe is not None


@pytest.mark.parametrize("values,message", [
    ({"default_processing_resolution": 4096}, "from 1 to 2048"),  # a download may not ask for tens of GB
    ({"processing_resolution_by_task": {"depth": 0}}, "from 1 to 2048"),
    ({"timestep": 1000}, "timestep must be a whole number from 0 to 999"),
    ({"flip_average_tasks": ["depht"]}, "unknown task 'depht'"),
    ({"processing_res": 512}, "unknown settings processing_res"),
])
def test_bad_settings_files_are_refused_with_the_reason(tmp_path, values, message):
    (tmp_path / SETTINGS_NAME).write_text(json.dumps(values))
    with pytest.raises(GenPerceptError, match=message):
        ModelSettings.of_folder(tmp_path)


def test_settings_round_trip():
    settings = ModelSettings(default_processing_resolution=192, processing_resolution_by_task={"alpha": 256},
                             flip_average_tasks=("normals",))
    assert settings.processing_resolution_by_task == {"matte": 256} and settings.flip_average_tasks == ("normal",)
    assert ModelSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
