"""Batch jobs on this machine: frames of images, sequences and videos, resumable, byte-identical to predict."""

import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from genpercept_bundle import GenPerceptError
from genpercept_bundle.batch.frames import list_frames, load_frame
from genpercept_bundle.batch.job import BatchOptions, output_folder_lock, run_batch

FAST = ["--task", "depth", "--flip-average", "off", "--processing-res", "64", "--no-preview"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # CPU results differ in the last bit between thread counts


def write_frames(folder, count, size=(48, 64), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[0], 0:size[1]]
    for index in range(count):
        rgb = np.stack([x * 3 + index, y * 4, (x + y) * 2], -1) + rng.integers(0, 30, (*size, 3))
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(folder / f"frame_{index:04d}.png")
    return folder


def genpercept(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "genpercept_bundle.cli", *map(str, args)], env=ONE_THREAD,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def map_files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def stop_midway(process, out, done_at_least, total):
    """SIGTERM ``process`` once ``done_at_least`` frames are saved; returns how many were saved then."""
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        saved = len(list(out.glob("*_depth.json"))) if out.is_dir() else 0
        if saved >= done_at_least:
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.2)
    process.communicate(timeout=120)
    saved = len(list(out.glob("*_depth.json")))
    assert done_at_least <= saved < total, f"stopped after {saved} of {total} frames"
    return saved


def test_frames_of_images_and_videos(tmp_path):
    write_frames(tmp_path / "shots", 3)
    video = cv2.VideoWriter(str(tmp_path / "shots" / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 24, (64, 48))
    for index in range(5):
        video.write(np.full((48, 64, 3), index * 40, np.uint8))
    video.release()
    frames = list_frames([tmp_path / "shots"])
    assert [f.stem for f in frames] == [f"clip_{i:06d}" for i in range(5)] + ["frame_0000", "frame_0001", "frame_0002"]
    assert frames[2].source.endswith("clip.avi#frame=2")
    assert abs(int(load_frame(frames[3])[10, 10, 0]) - 120) <= 3  # the fourth frame, decoded as RGB
    with pytest.raises(GenPerceptError, match="does not exist"):
        list_frames([tmp_path / "missing"])
    (tmp_path / "twin").mkdir()
    (tmp_path / "twin" / "frame_0000.png").write_bytes((tmp_path / "shots" / "frame_0000.png").read_bytes())
    with pytest.raises(GenPerceptError, match="would write the same output names"):
        list_frames([tmp_path / "shots", tmp_path / "twin"])


def test_a_stopped_local_job_resumes_and_matches_predict(tmp_path):
    frames = write_frames(tmp_path / "frames", 40)
    reference, out = tmp_path / "predict", tmp_path / "batch"
    assert genpercept("predict", frames, "--out", reference, *FAST).wait() == 0
    stop_midway(genpercept("batch", frames, out, *FAST), out, 5, 40)
    rerun = genpercept("batch", frames, out, *FAST)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert "already done" in stdout and "0 failed" in stdout
    assert map_files(out) == map_files(reference)  # every map, sidecar and nothing partial left
    assert not list(out.glob(".*"))


def test_failures_are_reported_and_the_job_goes_on(tmp_path):
    frames = write_frames(tmp_path / "frames", 2)
    (frames / "broken.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((10, 300, 3), np.uint8)).save(frames / "sliver.png")  # too thin at processing res 64
    summary = run_batch(list_frames([frames]), BatchOptions(tmp_path / "out", ("depth",), processing_res=64,
                                                             flip_average=False, previews=False), progress=False)
    assert summary.predicted == 2 and summary.skipped == 0
    reasons = dict(summary.failures)
    assert "cannot read" in reasons[str(frames / "broken.png")]
    assert "too thin" in reasons[str(frames / "sliver.png")]
    assert "2 frames predicted" in str(summary) and "2 failed" in str(summary)


def test_one_job_per_output_folder(tmp_path):
    with output_folder_lock(tmp_path):
        with pytest.raises(GenPerceptError, match="another batch job is writing to"):
            with output_folder_lock(tmp_path):
                pass
    with output_folder_lock(tmp_path):  # released again
        pass
