"""A torch Dataset over samples that decodes images and videos when an item is read.

Decoding happens in `__getitem__`, so with DataLoader workers it runs in parallel with training.
"""

from __future__ import annotations

import dataclasses

from torch.utils.data import Dataset

from vlmtune.data.images import DEFAULT_OPTIONS, load_image
from vlmtune.data.schema import Sample
from vlmtune.data.videos import as_decoded


class ConversationDataset(Dataset):
    def __init__(self, samples: list[Sample]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        sample = self.samples[index]
        options = sample.image_options or DEFAULT_OPTIONS
        images = [load_image(image, sample.source, options) for image in sample.images]
        videos = [as_decoded(video, sample.source, options) for video in sample.videos]
        return dataclasses.replace(sample, images=images, videos=videos)
