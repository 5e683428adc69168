"""One dense log line per logging step: step, loss, learning rate, throughput, memory and ETA."""

from __future__ import annotations

import logging
import resource
import time

import torch
from transformers import TrainerCallback

logger = logging.getLogger("vlmtune.train")


def memory_in_gib() -> float:
    """Return peak GPU memory allocated (CUDA) or peak resident memory of this process (CPU), in GiB."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class StepLogCallback(TrainerCallback):
    """Log `step 20/180 | loss 0.412 | lr 9.1e-05 | 12.3 samples/s | 410 tokens/s | mem 3.1 GiB | eta 2m05s`.

    Throughput covers the interval since the previous log line, across all processes.
    """

    def __init__(self, samples_per_step: int):
        self.samples_per_step = samples_per_step
        self._last_time = 0.0
        self._last_step = 0
        self._last_tokens = 0
        self._start_time = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start_time = self._last_time = time.perf_counter()
        self._last_step = state.global_step
        self._last_tokens = state.num_input_tokens_seen

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        now = time.perf_counter()
        elapsed = max(now - self._last_time, 1e-9)
        steps = state.global_step - self._last_step
        tokens = state.num_input_tokens_seen - self._last_tokens
        step_seconds = (now - self._start_time) / max(state.global_step, 1)
        eta = step_seconds * max(state.max_steps - state.global_step, 0)
        fields = [
            f"step {state.global_step}/{state.max_steps}",
            f"loss {logs['loss']:.4f}",
            f"lr {logs.get('learning_rate', 0.0):.2e}",
            f"grad_norm {logs.get('grad_norm', float('nan')):.3f}",
            f"{steps * self.samples_per_step / elapsed:.1f} samples/s",
            f"{tokens / elapsed:.0f} tokens/s",
            f"mem {memory_in_gib():.1f} GiB",
            f"eta {_format_duration(eta)}",
        ]
        logger.info(" | ".join(fields))
        self._last_time, self._last_step, self._last_tokens = now, state.global_step, state.num_input_tokens_seen


def _format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
