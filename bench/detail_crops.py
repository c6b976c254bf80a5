"""Crops of a photo's depth and normal previews without and with --detail, side by side, and the seam figure of each.

    python bench/detail_crops.py [PHOTO] [--detail 2] [--crop X Y W H] [--out docs/detail_crops.jpg] [--model DIR]

Runs `genpercept predict` twice (detail 1 and N, default processing resolution) and writes one picture: rows = the
photo, depth and normal previews of the crop; left = without, right = with detail.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from genpercept_bundle.inference.detail_tiles import seam_ratio

HERE = Path(__file__).parent
STREET = HERE.parent.parent / "shared" / "eval" / "real_dev" / "depth" / "nuscenes_cam_front_rgb.jpg"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("photo", nargs="?", type=Path, default=STREET)
    parser.add_argument("--detail", type=int, default=2)
    parser.add_argument("--crop", type=int, nargs=4, metavar=("X", "Y", "W", "H"), default=None,
                        help="default: the middle half of the photo")
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "detail_crops.jpg")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    photo = Image.open(args.photo).convert("RGB")
    x, y, w, h = args.crop or (photo.width // 4, photo.height // 4, photo.width // 2, photo.height // 2)
    box = (x, y, x + w, y + h)
    columns = []
    with tempfile.TemporaryDirectory() as work:
        for factor in (1, args.detail):
            out = Path(work) / str(factor)
            command = [sys.executable, "-m", "genpercept_bundle.cli", "predict", str(args.photo), "--task", "depth",
                       "normal", "--detail", str(factor), "--out", str(out)]
            subprocess.run(command + (["--model", args.model] if args.model else []), check=True,
                           stdout=subprocess.DEVNULL)
            stem = args.photo.stem
            previews = [Image.open(out / f"{stem}_{task}_preview.png").convert("RGB") for task in ("depth", "normal")]
            columns.append([photo.crop(box)] + [preview.crop(box) for preview in previews])
            for task in ("depth", "normal"):
                maps = np.asarray(Image.open(out / f"{stem}_{task}.png")).astype(np.float32)
                print(f"detail {factor} {task}: seam figure {seam_ratio(maps, max(factor, 2)):.3f} "
                      "(about 1: no tile edge shows)")
    sheet = Image.new("RGB", (2 * w + 8, 3 * h + 16), "white")
    for column, crops in enumerate(columns):
        for row, crop in enumerate(crops):
            sheet.paste(crop, (column * (w + 8), row * (h + 8)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=85)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
