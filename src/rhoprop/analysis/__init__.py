"""Analyses of targets and results: target similarity and grouping, multi-task studies, metrics, plots."""
