"""Running a model over a dataset folder and scoring it (see metrics.py), with simple depth baselines."""

import numpy as np

from ..data.dataset import read_sample, read_settings, sample_ids
from ..tasks import task_with_truth
from .metrics import score

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

    tasks = [task_with_truth(task, "evaluate") for task in tasks]
    settings = read_settings(dataset)
    scores: dict[str, dict[str, dict]] = {}
    for sample_id in tqdm(sample_ids(dataset, split)[:limit], desc=f"evaluating {split}", disable=not progress or None):
        sample = read_sample(dataset, split, sample_id, settings)
        truths = {task.name: getattr(sample, task.truth) for task in tasks if getattr(sample, task.truth) is not None}
        if predictor is not None and truths:
            predictions = predictor.predict_tasks(sample.rgb, list(truths), processing_res, flip_average=flip_average)
            for task, prediction in predictions.items():
                scores.setdefault(task, {})[sample_id] = score(task, prediction.maps[0], truths[task])
        if baselines and "depth" in truths:
            for kind in DEPTH_BASELINES:
                guess = baseline_depth(kind, *sample.depth.shape)
                scores.setdefault(f"depth_{kind}", {})[sample_id] = score("depth", guess, sample.depth)
    return scores


def mean_scores(scores: dict[str, dict[str, dict]]) -> dict:
    """{name: {"samples": n, metric: mean}} of ``score_samples``' output."""
    means = {}
    for name, per_sample in scores.items():
        rows = list(per_sample.values())
        means[name] = {"samples": len(rows), **{k: float(np.mean([r[k] for r in rows])) for k in rows[0]}}
    return means


def format_table(results: dict) -> str:
    lines = []
    for name, values in results.items():
        cells = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if k != "samples")
        lines.append(f"{name:<26} n={values['samples']:<4} {cells}")
    return "\n".join(lines)
