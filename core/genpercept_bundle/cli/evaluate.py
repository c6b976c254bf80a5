"""``genpercept eval``: score a model on a dataset folder, per sample and on average."""

from pathlib import Path

from ..atomic_files import write_json
from ..choices import FLIP_AVERAGE_CHOICES
from ..tasks import task_with_truth
from .options import add_flip_average_option, add_processing_resolution_option, add_task_option


def add_commands(commands):
    evaluate = commands.add_parser("eval", help="score a model on a dataset folder")
    evaluate.add_argument("dataset", type=Path)
    evaluate.add_argument("--model", default=None, help="model folder or hub id (default: the embedded model)")
    evaluate.add_argument("--split", default="test")
    add_task_option(evaluate)
    add_processing_resolution_option(evaluate)
    add_flip_average_option(evaluate)
    evaluate.add_argument("--limit", type=int, default=None, help="first N samples only")
    evaluate.add_argument("--baselines", action="store_true", help="also score constant and vertical-gradient depth")
    evaluate.add_argument("--json", type=Path, default=None, help="write the means and every sample's metrics here")
    evaluate.add_argument("--device", default="auto")
    evaluate.set_defaults(run=run_eval)


def run_eval(args) -> int:
    from ..models.folders import open_model_folder

    asked = args.task or open_model_folder(args.model).default_tasks
    tasks = [task_with_truth(t, "evaluate").name for t in asked]
    from ..evaluation.scoring import format_table, mean_scores, score_samples
    from ..inference.predictor import GenPerceptPredictor

    predictor = GenPerceptPredictor.from_pretrained(args.model, tasks, device=args.device)
    flip_average = FLIP_AVERAGE_CHOICES[args.flip_average]
    per_sample = score_samples(predictor, args.dataset, args.split, tasks, args.processing_res, args.limit,
                               args.baselines, flip_average=flip_average)
    results = mean_scores(per_sample)
    print(format_table(results))
    if args.json:
        write_json(args.json, {"dataset": str(args.dataset), "split": args.split, "model": args.model or "default",
                               "processing_res": {task: predictor.processing_resolution(task, args.processing_res)
                                                  for task in tasks},
                               "flip_average": {task: predictor.averages_with_mirror(task, flip_average) for task in tasks},
                               "results": results, "per_sample": per_sample})
    return 0
