"""A corpus of bad (and awkward but valid) inputs through `genpercept predict`, one row per case.

    python bench/bad_inputs.py

Each case runs as its own process on the embedded model (or a damaged copy of it) and is reported as:
exit code, the last stderr line, whether a Python traceback was printed, temporary files left in the
output folder, and non-finite values in any .npy written. Cases that should work are marked 'ok'.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.torch import load_file, save_file

from genpercept_bundle.models.folders import DEFAULT_MODEL_DIR, WEIGHTS_NAME


def photo(path: Path, size=(64, 48), mode="RGB", **save):
    y, x = np.mgrid[0:size[1], 0:size[0]]
    rgb = np.stack([x * 3 % 256, y * 5 % 256, (x + y) % 256], -1).astype(np.uint8)
    Image.fromarray(rgb).convert(mode).save(path, **save)
    return path


def cases(work: Path):
    good = photo(work / "good.png")
    (work / "a_file").write_text("x")
    yield "out is a file", [good, "--out", work / "a_file"], {}
    yield "out inside a file", [good, "--out", work / "a_file" / "maps"], {}
    yield "missing input", [work / "nope.jpg"], {}
    (work / "empty.png").write_bytes(b"")
    yield "0-byte file", [work / "empty.png"], {}
    (work / "truncated.jpg").write_bytes(photo(work / "t.jpg").read_bytes()[:300])
    yield "truncated JPEG", [work / "truncated.jpg"], {}
    Image.new("L", (13000, 13000)).save(work / "huge.png")
    yield f"13000x13000 PNG of {(work / 'huge.png').stat().st_size // 1024} KB", [work / "huge.png"], {}
    yield "1x1 image", [photo(work / "one.png", (1, 1))], {}
    yield "too thin among good ones", [photo(work / "thin.png", (400, 9)), good, "--processing-res", "256"], {}
    yield "CMYK JPEG (ok)", [photo(work / "cmyk.jpg", mode="CMYK")], {}
    yield "16-bit PNG (ok)", [photo(work / "deep.png", mode="I;16")], {}
    yield "palette PNG (ok)", [photo(work / "palette.png", mode="P")], {}
    frames = [Image.new("RGB", (64, 48), (i * 60, 0, 0)) for i in range(3)]
    frames[0].save(work / "animated.gif", save_all=True, append_images=frames[1:])
    yield "animated GIF, first frame (ok)", [work / "animated.gif"], {}
    exif = Image.Exif()
    exif[0x0112] = 6
    yield "EXIF-rotated JPEG (ok)", [photo(work / "rotated.jpg", exif=exif)], {}
    yield "unicode name (ok)", [photo(work / "фото 写真.png")], {}
    loop = work / "loop"
    loop.mkdir()
    (loop / "self").symlink_to(loop)
    photo(loop / "in_loop.png")
    yield "glob through a symlink loop (ok)", [str(loop) + "/**/*.png"], {}
    pickle = work / "model.ckpt"
    pickle.write_bytes(b"\x80\x04K\x01.")
    yield "pickle checkpoint as --model", [good, "--model", pickle], {}
    nan_model = shutil.copytree(DEFAULT_MODEL_DIR, work / "nan_model")
    weights = nan_model / "unet_depth_v2" / WEIGHTS_NAME
    state = load_file(weights)
    state[next(iter(state))] = state[next(iter(state))] * float("nan")
    save_file(state, weights)
    yield "NaN weights", [good, "--model", nan_model], {}
    shutil.rmtree(work / "nan_model")
    yield "SIGTERM mid-run (ok: 143/130, no partial file)", [*[photo(work / f"s{i}.png", (1024, 768)) for i in range(6)],
                                                           "--processing-res", "512"], {"terminate_after": 8.0}


def run(args, out, terminate_after=None):
    command = [sys.executable, "-m", "genpercept_bundle.cli", "predict", *map(str, args), "--format", "npy"]
    if "--out" not in map(str, args):
        command += ["--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if terminate_after:
        time.sleep(terminate_after)
        process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=900)
    return process.returncode, err


def main():
    print("| case | exit | message (the skipped image's, else the last line) | traceback | partial files | non-finite .npy |")
    print("|---|---|---|---|---|---|")
    totals = {"traceback": 0, "partial": 0, "nonfinite": 0}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for name, args, options in cases(work):
            out = work / "out"
            shutil.rmtree(out, ignore_errors=True)
            code, err = run(args, out, options.get("terminate_after"))
            lines = [line for line in err.strip().splitlines() if line.strip() and "it/s]" not in line]
            traceback = "Traceback" in err
            partial = len(list(out.glob(".partial-*"))) if out.is_dir() else 0
            nonfinite = sum(not np.isfinite(np.load(p)).all() for p in out.glob("*.npy")) if out.is_dir() else 0
            totals["traceback"] += traceback
            totals["partial"] += partial
            totals["nonfinite"] += nonfinite
            reason = next((line for line in lines if line.startswith("genpercept: skipped")), lines[-1] if lines else "")
            last = reason.replace(str(work), "…").replace("|", "/")[:160]
            print(f"| {name} | {code} | {last} | {'yes' if traceback else 'no'} | {partial} | {nonfinite} |")
    print(f"\ntracebacks {totals['traceback']}, partial files {totals['partial']}, non-finite outputs "
          f"{totals['nonfinite']}")


if __name__ == "__main__":
    os.environ.setdefault("GENPERCEPT_MAX_PIXELS", "100000000")
    main()
