"""Mattes of real photos against an empty matte: is the model's matte ever worse than predicting nothing?

    python bench/real_mattes.py [--model DIR] [--out docs/real_mattes.jpg]

The photos are examples/*.jpg (two people, a cat, a cup: public domain / CC0, see examples/CREDITS.md). No real
photo with a measured alpha installs here, so each has a reference matte in bench/real_mattes/ made once with
OpenCV's GrabCut from a rectangle around the subject and checked by eye: hard-edged and approximate (hair and the
tripod's gaps are rough), good enough to tell a matte that finds the subject from one that does not. Prints the
MSE of the model's matte, of an empty matte and of a full one against each reference, and writes one picture:
photo, model's matte, reference per row. Evaluation only: nothing trains on these photos.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from genpercept_bundle import GenPerceptPredictor, load_image
from genpercept_bundle.inference.predictor import as_rgb_batch
from genpercept_bundle.map_files import to_uint8

HERE = Path(__file__).parent
EXAMPLES = HERE.parent / "examples"
REFERENCES = HERE / "real_mattes"
ROW_HEIGHT = 200


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "real_mattes.jpg")
    args = parser.parse_args()
    predictor = GenPerceptPredictor.from_pretrained(args.model, ["matte"], device="cpu")
    rows, worse = [], []
    print(f"{'photo':<12} {'model MSE':>10} {'empty MSE':>10} {'full MSE':>10}  matte max")
    for reference_file in sorted(REFERENCES.glob("*_reference.png")):
        name = reference_file.name.removesuffix("_reference.png")
        photo = load_image(EXAMPLES / f"{name}.jpg")
        reference = np.asarray(Image.open(reference_file).convert("L"), np.float32) / 255.0
        matte = predictor.predict(as_rgb_batch(photo), "matte").maps[0]
        model_mse = float(np.mean((matte - reference) ** 2))
        empty_mse, full_mse = float(np.mean(reference ** 2)), float(np.mean((1.0 - reference) ** 2))
        print(f"{name:<12} {model_mse:>10.4f} {empty_mse:>10.4f} {full_mse:>10.4f}  {matte.max():.2f}")
        if model_mse > empty_mse:
            worse.append(name)
        rows.append([Image.open(EXAMPLES / f"{name}.jpg").convert("RGB"), _grey(matte), _grey(reference)])
    _write_sheet(rows, args.out)
    print(f"wrote {args.out}; worse than an empty matte: {', '.join(worse) or 'none'}")


def _grey(matte: np.ndarray) -> Image.Image:
    return Image.fromarray(to_uint8(matte)).convert("RGB")


def _write_sheet(rows, out: Path):
    scaled = [[image.resize((round(image.width * ROW_HEIGHT / image.height), ROW_HEIGHT)) for image in row]
              for row in rows]
    width = max(sum(image.width + 6 for image in row) for row in scaled)
    sheet = Image.new("RGB", (width, len(rows) * (ROW_HEIGHT + 6)), "white")
    for y, row in enumerate(scaled):
        x = 0
        for image in row:
            sheet.paste(image, (x, y * (ROW_HEIGHT + 6)))
            x += image.width + 6
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=85)


if __name__ == "__main__":
    main()
