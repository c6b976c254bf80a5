"""Running a model over a dataset folder and scoring it (see metrics.py), with simple depth baselines."""

import numpy as np

from .dataset import read_sample, read_settings, sample_ids
from .metrics import depth_metrics, matte_metrics, normal_metrics

DEPTH_BASELINES = ("constant", "vertical_gradient")


def baseline_depth(kind: str, height: int, width: int) -> np.ndarray:
    """'constant': one value everywhere; 'vertical_gradient': far at the top row, near at the bottom."""
    if kind == "constant":
        return np.full((height, width), 0.5, np.float32)
    return np.repeat(np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None], width, axis=1)


def score_samples(predictor, dataset, split="test", tasks=("depth", "normal", "matte"), processing_res=None,
                  limit=None, baselines=False, progress=True, flip_average=None) -> dict[str, dict[str, dict]]:
    """Metrics of every sample, per task (and per depth baseline): {name: {sample id: metrics}}; tasks without
    ground truth are skipped."""
    from tqdm import tqdm

    settings = read_settings(dataset)
    scores: dict[str, dict[str, dict]] = {}
    for sample_id in tqdm(sample_ids(dataset, split)[:limit], desc=f"evaluating {split}", disable=not progress or None):
        sample = read_sample(dataset, split, sample_id, settings)
        truths = {"depth": sample.depth, "normal": sample.normal, "matte": sample.alpha}
        scored = [task for task in tasks if truths[task] is not None]
        if predictor is not None and scored:
            predictions = predictor.predict_tasks(sample.rgb, scored, processing_res, flip_average=flip_average)
            for task, prediction in predictions.items():
                scores.setdefault(task, {})[sample_id] = _score(task, prediction.maps[0], sample)
        if baselines and "depth" in scored:
            for kind in DEPTH_BASELINES:
                guess = baseline_depth(kind, *sample.depth.shape)
                scores.setdefault(f"depth_{kind}", {})[sample_id] = _score("depth", guess, sample)
    return scores


def mean_scores(scores: dict[str, dict[str, dict]]) -> dict:
    """{name: {"samples": n, metric: mean}} of ``score_samples``' output."""
    means = {}
    for name, per_sample in scores.items():
        rows = list(per_sample.values())
        means[name] = {"samples": len(rows), **{k: float(np.mean([r[k] for r in rows])) for k in rows[0]}}
    return means


def _score(task, maps, sample):
    if task == "depth":
        return depth_metrics(maps, sample.depth, sample.depth > 0)
    if task == "normal":
        return normal_metrics(maps, sample.normal, np.linalg.norm(sample.normal, axis=-1) > 0.5)
    return matte_metrics(maps, sample.alpha)


def format_table(results: dict) -> str:
    lines = []
    for name, values in results.items():
        cells = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if k != "samples")
        lines.append(f"{name:<26} n={values['samples']:<4} {cells}")
    return "\n".join(lines)
