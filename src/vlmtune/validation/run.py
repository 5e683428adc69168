"""The validation pass over every sample: cached results first, the rest in parallel with a progress bar."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from tqdm.auto import tqdm

from vlmtune.data.schema import Sample
from vlmtune.validation.cache import ResultCache, sample_key
from vlmtune.validation.checks import CheckSettings, SampleResult, check_sample

logger = logging.getLogger(__name__)

_worker_settings: CheckSettings | None = None

# Below this many samples, starting processes costs more than it saves.
MIN_SAMPLES_PER_PROCESS = 16


def _init_worker(settings: CheckSettings) -> None:
    global _worker_settings  # noqa: PLW0603 - a worker process validates with one fixed set of settings
    # The parent may have used the tokenizer's own threads before forking, which would make the
    # tokenizers library print a warning and disable them in every worker anyway.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    # As in PyTorch's own DataLoader workers: one thread per process, so num_proc processes do not
    # oversubscribe the cores, and no OpenMP pool inherited from the parent is reused after fork.
    torch.set_num_threads(1)
    _worker_settings = settings


def _check_in_worker(sample: Sample) -> SampleResult:
    assert _worker_settings is not None
    return check_sample(sample, _worker_settings)


def check_all(
    samples: list[Sample],
    settings: CheckSettings,
    num_proc: int,
    cache: ResultCache | None,
    description: str,
) -> list[SampleResult]:
    """Return one result per sample, in order, from the cache or a fresh check."""
    results: list[SampleResult | None] = [None] * len(samples)
    keys = [sample_key(sample) for sample in samples] if cache is not None else []
    pending = []
    for index, sample in enumerate(samples):
        cached = cache.get(keys[index], sample) if cache is not None else None
        if cached is None:
            pending.append(index)
        else:
            results[index] = cached

    started = time.perf_counter()
    progress = tqdm(total=len(samples), initial=len(samples) - len(pending), desc=description, unit="sample")
    todo = [samples[index] for index in pending]
    workers = min(num_proc, len(todo) // MIN_SAMPLES_PER_PROCESS)
    if workers > 1:
        # With fork the workers inherit the processor without pickling it. Other platforms pickle it.
        context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(settings,)) as pool:
            fresh = pool.map(_check_in_worker, todo, chunksize=max(1, len(todo) // (workers * 8)))
            for index, result in zip(pending, fresh, strict=True):
                results[index] = result
                progress.update()
    else:
        for index, sample in zip(pending, todo, strict=True):
            results[index] = check_sample(sample, settings)
            progress.update()
    progress.close()

    if cache is not None and pending:
        for index in pending:
            cache.put(keys[index], results[index])
        cache.save()
    logger.info(
        "%s: %d samples, %d from the cache, %.1f s",
        description,
        len(samples),
        len(samples) - len(pending),
        time.perf_counter() - started,
    )
    return [result for result in results if result is not None]
