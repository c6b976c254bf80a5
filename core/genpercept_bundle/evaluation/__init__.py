"""Scoring a model on a dataset: the metrics of each task and simple baselines."""
