"""Decoding videos into evenly sampled RGB frames plus the timing metadata that video processors read.

A video is either a file (local path, http(s) URL, data URI or raw bytes), decoded with PyAV, or a
list of frames, each opened like an image. Files are sampled at `video_fps` frames per second of
video time. A video too long for `video_max_frames` at that rate is sampled evenly across its whole
length instead. Every selected frame goes through the same pixel limits as images, so one setting
bounds both. The metadata uses the keys of transformers' `VideoMetadata`, and `frames_indices / fps`
gives each kept frame's time in seconds, which models such as Qwen3-VL show as timestamps.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np
from PIL import Image

from vlmtune.data.errors import DataError
from vlmtune.data.images import (
    DATA_URI_PREFIX,
    DEFAULT_OPTIONS,
    URL_PREFIXES,
    ImageOptions,
    decode_data_uri,
    fetch_url,
    load_image,
    resize_to_limits,
)
from vlmtune.data.schema import DecodedVideo, VideoSource

TIME_TOLERANCE = 1e-3
"""Seconds a frame may fall short of a target time and still be taken for it, because containers
such as Matroska round timestamps to the millisecond."""


def load_video(source: VideoSource, where: str, options: ImageOptions = DEFAULT_OPTIONS) -> DecodedVideo:
    """Decode and sample `source` into a `DecodedVideo`.

    `where` names the sample (file and line) in the `DataError` raised for a missing, unreadable or
    out-of-limits video or frame.
    """
    if source.frames:
        return _from_frames(source, where, options)
    if source.file is None:
        raise DataError(where, "a video needs a file or at least one frame.", kind="missing_image")
    return _from_file(source.file, where, options)


def as_decoded(video: VideoSource | DecodedVideo, where: str, options: ImageOptions = DEFAULT_OPTIONS) -> DecodedVideo:
    """Return `video` itself if it is already decoded, otherwise decode it with `load_video`."""
    return video if isinstance(video, DecodedVideo) else load_video(video, where, options)


def spread_indices(total: int, count: int) -> list[int]:
    """Return `count` indices spread evenly over `range(total)`, the first one being 0."""
    # Rounding up matches the file path, which takes the first frame at or after each target time.
    return [-(-k * total // count) for k in range(count)]


def sample_times(total: int, fps: float, options: ImageOptions) -> list[float]:
    """Return the target times, in seconds from the first frame, for a file of `total` frames at `fps`."""
    duration = total / fps
    # The small margin keeps a float product such as 3.9999999 from losing a whole frame.
    requested = max(1, math.floor(duration * options.video_fps + 1e-9))
    count = max(1, min(requested, options.video_max_frames, total))
    step = 1 / options.video_fps if count == requested else duration / count
    return [k * step for k in range(count)]


def _from_frames(source: VideoSource, where: str, options: ImageOptions) -> DecodedVideo:
    total = len(source.frames)
    indices = spread_indices(total, min(total, max(1, options.video_max_frames)))
    images: list[Image.Image] = []
    for index in indices:
        image = load_image(source.frames[index], where, options)
        if images and image.size != images[0].size:
            raise DataError(
                where,
                f"video frame {index} is {image.width}x{image.height} pixels but frame {indices[0]} is "
                f"{images[0].width}x{images[0].height}. All frames of a video must have one size.",
                "Resize or crop the frames to one size.",
                kind="image_size",
            )
        images.append(image)
    frames = np.stack([np.asarray(image) for image in images])
    return _result(frames, total, source.fps or options.video_fps, indices)


def _from_file(file: Path | str | bytes, where: str, options: ImageOptions) -> DecodedVideo:
    media = _media(file, where, options)
    described = _describe(file)
    try:
        fps, frame_count = _inspect(media, described, where, options)
        with _open_container(media) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            targets = sample_times(frame_count, fps, options)
            frames, indices, total = _pick_frames(container.decode(stream), fps, targets, described, where, options)
    except (av.error.FFmpegError, OSError) as error:
        raise DataError(
            where,
            f"video {described} cannot be decoded ({error}). It may be truncated, corrupt or not a video.",
            "Replace or remove the file.",
            kind="corrupt_image",
        ) from error
    if not frames:
        raise DataError(
            where, f"video {described} has no decodable frames.", "Replace or remove the file.", kind="corrupt_image"
        )
    return _result(np.stack(frames), total, fps, indices)


def _media(file: Path | str | bytes, where: str, options: ImageOptions) -> Path | bytes:
    if isinstance(file, bytes):
        return file
    if isinstance(file, str) and file.startswith(DATA_URI_PREFIX):
        return decode_data_uri(file, where)
    if isinstance(file, str) and file.startswith(URL_PREFIXES):
        return fetch_url(file, where, options).getvalue()
    path = Path(file)
    if not path.is_file():
        raise DataError(
            where, f"video file {path} not found.", "Check the path or set --image-root.", kind="missing_image"
        )
    return path


def _describe(file: Path | str | bytes) -> str:
    if isinstance(file, bytes):
        return f"<{len(file)} bytes>"
    if isinstance(file, str) and file.startswith(DATA_URI_PREFIX):
        return f"<data URI, {len(file)} characters>"
    return str(file)


def _open_container(media: Path | bytes) -> av.container.InputContainer:
    return av.open(io.BytesIO(media) if isinstance(media, bytes) else str(media))


def _inspect(media: Path | bytes, described: str, where: str, options: ImageOptions) -> tuple[float, int]:
    """Return the frame rate and the frame count of the first video stream, checking its frame size.

    NOTE: raw elementary streams (.m4v, .h264) can report a default average rate of 25 fps whatever
    their real rate, which makes the sampling and the timestamps wrong for them.
    """
    with _open_container(media) as container:
        if not container.streams.video:
            raise DataError(
                where, f"{described} has no video stream.", "Replace or remove the file.", kind="corrupt_image"
            )
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise DataError(where, f"video {described} has no frame rate.", "Re-encode the file.", kind="corrupt_image")
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > options.decode_pixel_limit:
            raise DataError(
                where,
                f"video {described} is {width}x{height} pixels, over the decoding limit of "
                f"{options.decode_pixel_limit} pixels.",
                "Shrink the video or raise --decode-pixel-limit.",
                kind="image_size",
            )
        # Matroska and WebM files store no frame count, so the packets are counted instead. This reads
        # the file without decoding it, which is usually cheap next to the decoding that follows.
        count = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
    return float(rate), count


def _pick_frames(
    decoded: Iterable[av.VideoFrame],
    fps: float,
    targets: list[float],
    described: str,
    where: str,
    options: ImageOptions,
) -> tuple[list[np.ndarray], list[int], int]:
    """Select the first frame at or after each target time.

    Returns the selected frames, their indices in the video and the number of frames in the video.
    NOTE: decoding every frame in order is exact but slow for long videos. Seeking to the keyframe
    before each target would be faster.
    """
    selected: list[np.ndarray] = []
    indices: list[int] = []
    position = 0
    origin = None
    count = 0
    for count, frame in enumerate(decoded, start=1):
        # Frames of raw streams such as H.264 elementary streams have no timestamps, so they are
        # taken as evenly spaced.
        time = (count - 1) / fps if frame.time is None else frame.time
        origin = time if origin is None else origin
        if position < len(targets) and time - origin >= targets[position] - TIME_TOLERANCE:
            image = Image.fromarray(frame.to_ndarray(format="rgb24"))
            selected.append(np.asarray(resize_to_limits(image, described, where, options)))
            indices.append(count - 1)
            # Several targets can fall on one frame when the video is sparser than the sampling rate.
            while position < len(targets) and time - origin >= targets[position] - TIME_TOLERANCE:
                position += 1
    return selected, indices, count


def _result(frames: np.ndarray, total: int, fps: float, indices: list[int]) -> DecodedVideo:
    metadata = {
        "total_num_frames": total,
        "fps": float(fps),
        "duration": total / fps,
        "frames_indices": indices,
        "height": int(frames.shape[1]),
        "width": int(frames.shape[2]),
    }
    return DecodedVideo(frames=frames, metadata=metadata)
