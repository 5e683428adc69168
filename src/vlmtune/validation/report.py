"""The validation report: counts per split, problems by kind, and the token budget."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from vlmtune.data.errors import PROBLEM_KINDS, DataError
from vlmtune.validation.checks import SampleResult

REPORT_KIND = "vlmtune-validation-report"
"""Marker in the JSON report, so a later run recognises a file it may replace."""

MAX_PRINTED_PROBLEMS = 20


def token_distribution(values: list[int]) -> dict[str, float | int]:
    """Return count, total, min, mean, median, 95th percentile and max of `values` (zeros when empty)."""
    if not values:
        return {"count": 0, "total": 0, "min": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0}
    array = np.asarray(values)
    return {
        "count": len(values),
        "total": int(array.sum()),
        "min": int(array.min()),
        "mean": round(float(array.mean()), 2),
        "p50": round(float(np.percentile(array, 50)), 2),
        "p95": round(float(np.percentile(array, 95)), 2),
        "max": int(array.max()),
    }


def split_report(results: list[SampleResult], rejected: list[DataError], max_length: int) -> dict[str, Any]:
    """Summarise one split: its read records, usable samples, problems and token distribution.

    Token distributions cover every sample that could be encoded, over-long ones included, so the
    report shows how far they exceed max_length. The budget counts the usable samples only.
    """
    problems = Counter(dict.fromkeys(PROBLEM_KINDS, 0))
    problems.update(error.kind for error in rejected)
    # A sample repeated by weighted mixing is one problem, not one per repetition.
    problems.update(result.kind for result in {r.source: r for r in results if r.kind}.values())
    measured = [result for result in results if result.total_tokens is not None]
    usable = [result for result in results if result.kind is None]
    return {
        "records": len(results) + len(rejected),
        "usable_samples": len(usable),
        "formats": dict(sorted(Counter(result.format for result in results).items())),
        "images_per_sample": {str(k): v for k, v in sorted(Counter(r.num_images for r in results).items())},
        "videos_per_sample": {str(k): v for k, v in sorted(Counter(r.num_videos for r in results).items())},
        "problems": dict(problems),
        "over_max_length": problems["too_long"],
        "tokens": {
            "text": token_distribution([result.text_tokens for result in measured]),
            "image": token_distribution([result.image_tokens for result in measured]),
            "total": token_distribution([result.total_tokens for result in measured]),
        },
        "budget": {
            "tokens": sum(result.total_tokens for result in usable),
            "image_tokens": sum(result.image_tokens for result in usable),
            "supervised_tokens": sum(result.supervised_tokens for result in usable),
            "images": sum(result.num_images for result in usable),
            "videos": sum(result.num_videos for result in usable),
        },
    }


def problem_entries(
    results: dict[str, list[SampleResult]], rejected: dict[str, list[DataError]]
) -> list[dict[str, str]]:
    """List every problem as {split, source, kind, reason}, unreadable records first."""
    entries = []
    for split, errors in rejected.items():
        entries.extend(
            {"split": split, "source": error.where, "kind": error.kind, "reason": _reason(error)} for error in errors
        )
    for split, split_results in results.items():
        entries.extend(
            {"split": split, "source": result.source, "kind": result.kind, "reason": result.problem}
            for result in {r.source: r for r in split_results if r.kind}.values()
        )
    return entries


def _reason(error: DataError) -> str:
    return f"{error.problem} {error.fix}" if error.fix else error.problem


def build_report(
    results: dict[str, list[SampleResult]],
    rejected: dict[str, list[DataError]],
    max_length: int,
    policy: str,
) -> dict[str, Any]:
    """Return the whole report as plain data (what the JSON file contains)."""
    return {
        "kind": REPORT_KIND,
        "max_length": max_length,
        "bad_samples": policy,
        "splits": {split: split_report(results[split], rejected.get(split, []), max_length) for split in results},
        "problems": problem_entries(results, rejected),
    }


def format_report(report: dict[str, Any]) -> str:
    """Render the report as a few readable lines per split."""
    lines = [f"Data validation (max_length {report['max_length']}, bad samples: {report['bad_samples']})"]
    for split, data in report["splits"].items():
        problems = ", ".join(f"{kind} {count}" for kind, count in data["problems"].items() if count) or "none"
        formats = ", ".join(f"{name} {count}" for name, count in data["formats"].items()) or "none"
        images = ", ".join(f"{n} image(s): {count}" for n, count in data["images_per_sample"].items())
        lines += [
            f"{split}: {data['records']} records, {data['usable_samples']} usable",
            f"  formats: {formats}",
            f"  images per sample: {images or 'none'}",
        ]
        if data["budget"]["videos"]:
            videos = ", ".join(f"{n} video(s): {count}" for n, count in data["videos_per_sample"].items())
            lines.append(f"  videos per sample: {videos} (video frames count as image tokens)")
        lines += [
            f"  problems: {problems}",
        ]
        for name in ("text", "image", "total"):
            stats = data["tokens"][name]
            lines.append(
                f"  {name} tokens per sample: min {stats['min']}, mean {stats['mean']}, median {stats['p50']}, "
                f"p95 {stats['p95']}, max {stats['max']}"
            )
        budget = data["budget"]
        scope = "one epoch" if split == "train" else "all usable samples"
        media = f"{budget['images']} images"
        if budget["videos"]:
            media += f", {budget['videos']} videos"
        lines.append(
            f"  {scope}: {budget['tokens']} tokens ({budget['image_tokens']} image, "
            f"{budget['supervised_tokens']} supervised), {media}"
        )
    listed = report["problems"][:MAX_PRINTED_PROBLEMS]
    if listed:
        lines.append("Problems:")
        lines += [f"  [{entry['split']}] {entry['source']}: {entry['reason']}" for entry in listed]
        if len(report["problems"]) > len(listed):
            lines.append(f"  ... and {len(report['problems']) - len(listed)} more (see the JSON report)")
    return "\n".join(lines)
