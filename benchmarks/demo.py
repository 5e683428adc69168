"""Time the offline demo end to end and print the numbers recorded in docs/benchmarks.md.

Run on an otherwise idle machine: `uv run python benchmarks/demo.py`. It runs `train.py` with no
arguments (the demo config) into a temporary output folder, measures the wall time of the whole
command, demo model build included unless it is already cached, and reads run_summary.json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        output_dir = Path(folder) / "run"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, str(REPO / "train.py"), "--output-dir", str(output_dir)],
            check=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        wall_seconds = time.perf_counter() - started
        summary = json.loads((output_dir / "run_summary.json").read_text())

    record = {
        "wall_seconds": round(wall_seconds, 1),
        "train_seconds": summary["train_seconds"],
        "eval_seconds_before": summary["eval_seconds_before"],
        "eval_seconds_after": summary["eval_seconds_after"],
        "steps": summary["steps"],
        "accuracy_before": summary["accuracy_before"],
        "accuracy_after": summary["accuracy_after"],
        "eval_samples": summary["eval_samples"],
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "torch": torch.__version__,
    }
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
