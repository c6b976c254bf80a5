"""Datasets: the folder layout for training and evaluation, and the synthetic scene generator."""
