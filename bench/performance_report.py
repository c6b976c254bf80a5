"""Every performance figure of the bundle in one run, side by side (docs/performance.md quotes it).

    python bench/performance_report.py [--repeats 3] [--sizes 512 768 1024 2048] [--photos 50]
                                       [--sections pass layout repeat memory embedded large detail]

Sections, each measured in fresh processes (so a peak RSS is that run's own), fp32 on the CPU:

- pass:     SD2.1-size random checkpoints in the released layouts (bench/families_full_size.py writes them), one
            512 x 512 photo at processing resolution 512: the project's GenPercept pass against the same diffusers
            modules called by hand (VAE encode -> UNet -> VAE decode), the DPT-head variant, and diffusers' own
            MarigoldDepthPipeline at 4 and 1 steps; the median of ``--repeats`` after a warm-up, and the ratios.
- layout:   that GenPercept pass with weights and activations in channels_last against the default layout.
- repeat:   `genpercept predict` of that photo on that checkpoint, first call (empty digest cache: the weights are
            hashed for provenance) against a repeat call.
- memory:   peak RSS of an SD2.1-size pass by processing resolution, VAE tiling on (bench/memory_by_resolution.py).
- embedded: the embedded model, `genpercept predict` of one photo (all its tasks): seconds to the first map file
            and to the end; then one command over a folder of ``--photos`` photos: images/s.
- large:    a 4096 x 3072 photo, all tasks of the embedded model, in one process: inference against writing.
- detail:   the embedded model with --detail 2 against without on a 1024 x 576 street photo: time and seam figure.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent
FAMILIES = HERE / "results" / "families"
GENPERCEPT = FAMILIES / "genpercept-depth"
DPT_HEAD = FAMILIES / "genpercept-disparity-dpt-head"
MARIGOLD = FAMILIES / "marigold-depth-v1-1"
EXAMPLE = HERE.parent / "examples" / "photo.jpg"
STREET = HERE.parent.parent / "shared" / "eval" / "real_dev" / "depth" / "nuscenes_cam_front_rgb.jpg"
GENPERCEPT_COMMAND = [sys.executable, "-m", "genpercept_bundle.cli"]  # what the `genpercept` script runs
PASSES = ("project", "raw modules", "dpt head", "diffusers marigold 4 steps", "diffusers marigold 1 step",
          "channels_last")


def photo_512() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)


def timed(run, repeats: int) -> dict:
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return {"first_s": round(times[0], 2), "median_s": round(statistics.median(times[1:]), 2)}


def measure_pass(kind: str, repeats: int) -> dict:
    """In this process: load one 512² pass of ``kind`` (PASSES), warm up, time it."""
    import torch

    rgb = photo_512()
    started = time.perf_counter()
    if kind in ("project", "channels_last", "dpt head"):
        from genpercept_bundle import GenPerceptPredictor

        folder, task = (DPT_HEAD, "disparity") if kind == "dpt head" else (GENPERCEPT, "depth")
        predictor = GenPerceptPredictor.from_pretrained(folder, [task], device="cpu")
        if kind == "channels_last":
            predictor.modules().to(memory_format=torch.channels_last)

        def run():
            predictor.predict(rgb, task, processing_res=512)
    elif kind == "raw modules":
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from safetensors.torch import load_file

        vae = AutoencoderKL.from_pretrained(GENPERCEPT / "vae", torch_dtype=torch.float32).eval()
        unet = UNet2DConditionModel.from_pretrained(GENPERCEPT / "unet_depth_v2", torch_dtype=torch.float32).eval()
        embedding = load_file(GENPERCEPT / "empty_text_embed.safetensors")["v2"]  # what unet_*_v2 is run with
        image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1

        @torch.inference_mode()
        def run():
            latent = vae.encode(image).latent_dist.mode() * vae.config.scaling_factor
            target = -unet(latent, torch.tensor([1]), encoder_hidden_states=embedding).sample
            vae.decode(target / vae.config.scaling_factor).sample.mean(dim=1).clamp(-1, 1).numpy()
    else:
        from diffusers import AutoencoderKL, DDIMScheduler, MarigoldDepthPipeline, UNet2DConditionModel
        from safetensors.torch import load_file

        # diffusers' own pipeline on the same weights; the cached empty-text embedding stands in for its text encoder
        pipeline = MarigoldDepthPipeline(
            unet=UNet2DConditionModel.from_pretrained(MARIGOLD / "unet", torch_dtype=torch.float32),
            vae=AutoencoderKL.from_pretrained(MARIGOLD / "vae", torch_dtype=torch.float32),
            scheduler=DDIMScheduler.from_pretrained(MARIGOLD / "scheduler"), text_encoder=None, tokenizer=None,
            prediction_type="depth", scale_invariant=True, shift_invariant=True)
        pipeline.empty_text_embedding = load_file(MARIGOLD / "empty_text_embed.safetensors")["v2"]
        pipeline.set_progress_bar_config(disable=True)
        steps = 4 if "4 steps" in kind else 1
        image = Image.fromarray(rgb)

        def run():
            pipeline(image, num_inference_steps=steps, processing_resolution=512, ensemble_size=1,
                     generator=torch.Generator().manual_seed(0))
    load = time.perf_counter() - started
    return {"pass": kind, "load_s": round(load, 2), **timed(run, repeats), "threads": torch.get_num_threads()}


def in_fresh_process(arguments: list[str]) -> dict:
    """Run this script with ``arguments`` in a new process; its last JSON line plus its peak RSS."""
    process = subprocess.Popen([sys.executable, __file__, *arguments], stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{arguments} failed (status {status})")
    return {**json.loads(output.strip().splitlines()[-1]), "peak_rss_gb": round(usage.ru_maxrss / 1024**2, 2)}


def run_command(command: list[str], environment=None) -> tuple[float, float]:
    """(wall seconds, peak RSS GB) of a command."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=environment)
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{errors}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024**2


def section_pass(args, work: Path):
    rows = {kind: in_fresh_process(["--one-pass", kind, "--repeats", str(args.repeats)])
            for kind in PASSES if kind != "channels_last"}
    project, raw = rows["project"]["median_s"], rows["raw modules"]["median_s"]
    marigold = rows["diffusers marigold 4 steps"]["median_s"]
    print("\n## One 512 x 512 pass, SD2.1-size, fp32\n")
    print("| pass | load s | first s | median s | peak RSS GB | vs raw modules | vs Marigold 4 steps |\n"
          "|---|---|---|---|---|---|---|")
    for kind, row in rows.items():
        print(f"| {kind} | {row['load_s']} | {row['first_s']} | {row['median_s']} | {row['peak_rss_gb']} | "
              f"{row['median_s'] / raw:.2f}x the time | {marigold / row['median_s']:.2f}x faster |")
    print(f"\nproject / raw modules: {project / raw:.3f} (target <= 1.05); "
          f"DPT head vs Marigold 4 steps: {marigold / rows['dpt head']['median_s']:.2f}x faster (target >= 3)")


def section_layout(args, work: Path):
    rows = {kind: in_fresh_process(["--one-pass", kind, "--repeats", str(args.repeats)])
            for kind in ("project", "channels_last")}
    print("\n## Memory layout, the GenPercept pass above\n\n| layout | median s | peak RSS GB |\n|---|---|---|")
    for kind, row in rows.items():
        print(f"| {'default (contiguous)' if kind == 'project' else kind} | {row['median_s']} | {row['peak_rss_gb']} |")


def section_repeat(args, work: Path):
    photo = work / "photo_512.png"
    Image.fromarray(photo_512()).save(photo)
    environment = {**os.environ, "HOME": str(work / "home")}  # its own, empty, digest cache
    command = GENPERCEPT_COMMAND + ["predict", str(photo), "--model", str(GENPERCEPT), "--task", "depth",
                                    "--processing-res", "512", "--format", "npy", "--no-preview", "--out"]
    first = run_command(command + [str(work / "first")], environment)
    repeat = run_command(command + [str(work / "repeat")], environment)
    print("\n## `genpercept predict`, SD2.1-size checkpoint, 512 x 512\n\n| call | wall s | peak RSS GB |\n|---|---|---|")
    print(f"| first (hashes the weights) | {first[0]:.1f} | {first[1]:.2f} |\n| repeat | {repeat[0]:.1f} | "
          f"{repeat[1]:.2f} |")


def section_memory(args, work: Path):
    print("\n## Peak memory by processing resolution, VAE tiling on\n", flush=True)
    subprocess.run([sys.executable, str(HERE / "memory_by_resolution.py"), "--sizes", *map(str, args.sizes),
                    "--tiling", "on"], check=True)


def first_output(command: list[str], out: Path) -> tuple[float, float]:
    """(seconds to the first file in ``out``, seconds to the end) of a command."""
    shutil.rmtree(out, ignore_errors=True)
    started = time.time()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ended = time.time()
    return min(path.stat().st_mtime for path in out.iterdir()) - started, ended - started


def section_embedded(args, work: Path):
    out = work / "embedded"
    runs = [first_output(GENPERCEPT_COMMAND + ["predict", str(EXAMPLE), "--out", str(out)], out)
            for _ in range(args.repeats)]
    folder = work / "photos"
    folder.mkdir(exist_ok=True)
    photo = Image.open(EXAMPLE).convert("RGB")
    for index in range(args.photos):  # the example, shifted and mirrored: photo-like content, all different
        shifted = np.roll(np.asarray(photo), index * 11, axis=1)
        Image.fromarray(shifted[:, ::-1] if index % 2 else shifted).save(folder / f"photo_{index:03d}.jpg", quality=92)
    many = work / "many"
    started = time.time()
    subprocess.run(GENPERCEPT_COMMAND + ["predict", str(folder), "--out", str(many)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.time() - started
    written = sorted(path.stat().st_mtime for path in many.glob("*_depth.png"))
    steady = (len(written) - 1) / (written[-1] - written[0])
    print(f"\n## The embedded model ({EXAMPLE.name}, {photo.width} x {photo.height}, depth + normals + matte)\n")
    print("| figure | value |\n|---|---|")
    print(f"| first map file written (median of {len(runs)}) | {statistics.median(r[0] for r in runs):.2f} s |")
    print(f"| whole command (median of {len(runs)}) | {statistics.median(r[1] for r in runs):.2f} s |")
    print(f"| {args.photos} photos, one command | {seconds:.1f} s = {args.photos / seconds:.2f} images/s |")
    print(f"| the same once loaded (between the first and last photo's depth file) | {steady:.2f} images/s |")


def measure_large() -> dict:
    """In this process: a 4096 x 3072 photo, all tasks of the embedded model, inference and writing timed apart."""
    from genpercept_bundle import GenPerceptPredictor
    from genpercept_bundle.map_files import save_prediction

    photo = np.asarray(Image.open(EXAMPLE).convert("RGB").resize((4096, 3072), Image.BICUBIC))
    predictor = GenPerceptPredictor.from_pretrained(None, None, device="cpu")
    inference = writing = 0.0
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        for _, prediction in predictor.iter_predictions(photo, predictor.tasks):
            inference += time.perf_counter() - started
            started = time.perf_counter()
            save_prediction(Path(out), "large", "large.png", prediction, "png16")
            writing += time.perf_counter() - started
            started = time.perf_counter()
    return {"inference_s": round(inference, 2), "writing_s": round(writing, 2)}


def section_large(args, work: Path):
    row = in_fresh_process(["--one-large"])
    print("\n## A 4096 x 3072 photo, embedded model, depth + normals + matte (png16 + previews)\n")
    print(f"| inference s | writing s | peak RSS GB |\n|---|---|---|\n| {row['inference_s']} | {row['writing_s']} | "
          f"{row['peak_rss_gb']} |")


def section_detail(args, work: Path):
    from genpercept_bundle.inference.detail_tiles import seam_ratio

    print(f"\n## --detail on {STREET.name} (1024 x 576), embedded model\n")
    print("| detail | wall s | depth seam figure | normal seam figure |\n|---|---|---|---|")
    for factor in (1, 2, 3):
        out = work / f"detail_{factor}"
        seconds, _ = run_command(GENPERCEPT_COMMAND + ["predict", str(STREET), "--out", str(out), "--format", "npy",
                                                      "--detail", str(factor), "--no-preview"])
        seams = [seam_ratio(np.load(out / f"{STREET.stem}_{task}.npy"), max(factor, 2)) for task in ("depth", "normal")]
        print(f"| {factor} | {seconds:.1f} | {seams[0]:.3f} | {seams[1]:.3f} |")


SECTIONS = {"pass": section_pass, "layout": section_layout, "repeat": section_repeat, "memory": section_memory,
            "embedded": section_embedded, "large": section_large, "detail": section_detail}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 768, 1024, 2048])
    parser.add_argument("--photos", type=int, default=50)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--one-pass", choices=PASSES, help=argparse.SUPPRESS)  # internal: one measurement here
    parser.add_argument("--one-large", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_pass:
        return print(json.dumps(measure_pass(args.one_pass, args.repeats)))
    if args.one_large:
        return print(json.dumps(measure_large()))
    if any(section in args.sections for section in ("pass", "layout", "repeat", "memory")):
        sys.path.insert(0, str(HERE))
        from families_full_size import write_checkpoints

        write_checkpoints()  # once: the SD2.1-size checkpoints in bench/results/families
    print(f"# Performance report, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory() as work:
        for name in args.sections:
            SECTIONS[name](args, Path(work))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
