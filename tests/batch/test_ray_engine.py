"""The Ray engine on a local Ray cluster: a 200-frame job stopped midway, restarted, byte-identical to predict."""

import pytest

from test_job import FAST, genpercept, map_files, stop_midway, write_frames

pytest.importorskip("ray.data")


def test_a_stopped_ray_job_resumes_and_matches_predict(tmp_path):
    frames = write_frames(tmp_path / "frames", 200)
    reference, out = tmp_path / "predict", tmp_path / "batch"
    assert genpercept("predict", frames, "--out", reference, *FAST).wait() == 0
    ray_job = ["batch", frames, out, *FAST, "--engine", "ray", "--workers", "2"]
    saved = stop_midway(genpercept(*ray_job), out, 20, 200)
    rerun = genpercept(*ray_job)
    stdout, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, stderr[-2000:]
    assert f"{200 - saved} frames predicted" in stdout and f"{saved} already done" in stdout
    assert map_files(out) == map_files(reference)
    assert not list(out.glob(".*"))
