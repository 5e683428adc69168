"""Evaluation: batched greedy generation and task metrics."""
