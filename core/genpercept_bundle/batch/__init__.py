"""Whole shots and image sets: ``genpercept batch`` over folders, globs, image sequences and videos, resumable,
on this machine or on a Ray cluster, writing what ``genpercept predict`` writes."""
