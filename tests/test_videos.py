"""Video decoding: frame sampling from files and frame lists, the metadata, limits and errors.

Every test video is written here with PyAV. Frame i is a solid gray of level 10 * i, so the source
index of each returned frame can be read back from its pixels.
"""

from __future__ import annotations

import base64
import functools
import http.server
import threading
import wave

import av
import numpy as np
import pytest
from PIL import Image

from vlmtune.data.errors import DataError
from vlmtune.data.images import ImageOptions
from vlmtune.data.schema import DecodedVideo, VideoSource
from vlmtune.data.videos import as_decoded, load_video

WHERE = "clips.jsonl:3"
WIDTH, HEIGHT = 32, 24


def gray(level: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    return np.full((height, width, 3), level, dtype=np.uint8)


def write_video(path, count: int = 20, fps: int = 10, codec: str = "ffv1", pix_fmt: str = "bgr0"):
    """Write `count` frames at `fps`. FFV1 with an RGB pixel format is lossless, so the levels stay exact."""
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, pix_fmt
        for index in range(count):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(gray(10 * index), format="rgb24")))
        container.mux(stream.encode())
    return path


def write_frames(folder, levels, sizes=None) -> tuple:
    folder.mkdir(exist_ok=True)
    paths = []
    for position, level in enumerate(levels):
        width, height = sizes[position] if sizes else (WIDTH, HEIGHT)
        path = folder / f"{position:03d}.png"
        Image.fromarray(gray(level, width, height)).save(path)
        paths.append(path)
    return tuple(paths)


def levels(video: DecodedVideo) -> list[int]:
    return [int(frame[0, 0, 0]) for frame in video.frames]


@pytest.fixture
def mkv(tmp_path):
    """Return a two-second video of 20 frames at 10 fps, in a container that stores no frame count."""
    return write_video(tmp_path / "clip.mkv")


def test_file_sampled_at_video_fps(mkv):
    video = load_video(VideoSource(file=mkv), WHERE, ImageOptions(video_fps=2))
    assert video.frames.dtype == np.uint8
    assert video.frames.shape == (4, HEIGHT, WIDTH, 3)
    assert video.metadata == {
        "total_num_frames": 20,
        "fps": 10.0,
        "duration": 2.0,
        "frames_indices": [0, 5, 10, 15],
        "height": HEIGHT,
        "width": WIDTH,
    }
    for frame, index in zip(video.frames, [0, 5, 10, 15], strict=True):
        assert np.array_equal(frame, gray(10 * index))


def test_long_file_spread_over_max_frames(mkv):
    video = load_video(VideoSource(file=str(mkv)), WHERE, ImageOptions(video_fps=2, video_max_frames=3))
    # The targets are 0, 2/3 and 4/3 s, so the first frames at or after them are at 0.0, 0.7 and 1.4 s.
    assert video.metadata["frames_indices"] == [0, 7, 14]
    assert levels(video) == [0, 70, 140]
    assert video.metadata["total_num_frames"] == 20


def test_fast_sampling_no_duplicates(mkv):
    video = load_video(VideoSource(file=mkv), WHERE, ImageOptions(video_fps=30, video_max_frames=64))
    assert video.metadata["frames_indices"] == list(range(20))
    assert levels(video) == [10 * index for index in range(20)]


def test_short_file_one_frame(tmp_path):
    path = write_video(tmp_path / "short.mkv", count=3)
    video = load_video(VideoSource(file=path), WHERE, ImageOptions(video_fps=2))
    assert video.metadata["frames_indices"] == [0]
    assert video.metadata["total_num_frames"] == 3
    assert video.metadata["duration"] == pytest.approx(0.3)
    assert video.frames.shape == (1, HEIGHT, WIDTH, 3)


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_lossy_mp4(tmp_path, codec):
    path = write_video(tmp_path / f"{codec}.mp4", codec=codec, pix_fmt="yuv420p")
    video = load_video(VideoSource(file=path), WHERE, ImageOptions(video_fps=2))
    assert video.metadata["frames_indices"] == [0, 5, 10, 15]
    assert video.metadata["total_num_frames"] == 20
    assert video.metadata["fps"] == 10.0
    for frame, index in zip(video.frames, [0, 5, 10, 15], strict=True):
        assert np.abs(frame.astype(int) - 10 * index).max() <= 6


def test_bytes_and_data_uri(mkv):
    data = mkv.read_bytes()
    uri = "data:video/x-matroska;base64," + base64.b64encode(data).decode()
    for file in (data, uri):
        video = load_video(VideoSource(file=file), WHERE, ImageOptions(video_fps=2))
        assert video.metadata["frames_indices"] == [0, 5, 10, 15]
        assert levels(video) == [0, 50, 100, 150]


def test_url_from_a_local_server(tmp_path, mkv):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=mkv.parent))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{mkv.name}"
        options = ImageOptions(video_fps=2, url_cache_dir=str(tmp_path / "cache"))
        video = load_video(VideoSource(file=url), WHERE, options)
    finally:
        server.shutdown()
        server.server_close()
    assert levels(video) == [0, 50, 100, 150]


def test_missing_file(tmp_path):
    path = tmp_path / "absent.mp4"
    with pytest.raises(DataError) as caught:
        load_video(VideoSource(file=path), WHERE)
    assert caught.value.kind == "missing_image"
    assert WHERE in str(caught.value)
    assert str(path) in str(caught.value)
    assert "--image-root" in str(caught.value)


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "x.mp4"
    path.write_text("this is a shopping list, not a video\n")
    with pytest.raises(DataError) as caught:
        load_video(VideoSource(file=path), WHERE)
    assert caught.value.kind == "corrupt_image"
    assert str(caught.value).startswith(f"{WHERE}: video {path} cannot be decoded")


def test_audio_only_file(tmp_path):
    path = tmp_path / "sound.wav"
    with wave.open(str(path), "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(bytes(1600))
    with pytest.raises(DataError) as caught:
        load_video(VideoSource(file=path), WHERE)
    assert caught.value.kind == "corrupt_image"
    assert "has no video stream" in str(caught.value)


def test_frame_list_over_max_frames(tmp_path):
    frames = write_frames(tmp_path / "frames", [10 * index for index in range(10)])
    video = load_video(VideoSource(frames=frames), WHERE, ImageOptions(video_max_frames=4))
    assert video.frames.shape == (4, HEIGHT, WIDTH, 3)
    assert video.frames.dtype == np.uint8
    assert levels(video) == [0, 30, 50, 80]
    assert np.array_equal(video.frames[1], gray(30))
    # Without its own fps the list runs at the configured video_fps (2 by default).
    assert video.metadata == {
        "total_num_frames": 10,
        "fps": 2.0,
        "duration": 5.0,
        "frames_indices": [0, 3, 5, 8],
        "height": HEIGHT,
        "width": WIDTH,
    }


def test_frame_list_fps(tmp_path):
    frames = write_frames(tmp_path / "frames", [0, 100, 200])
    own = load_video(VideoSource(frames=frames, fps=4.0), WHERE, ImageOptions(video_fps=1))
    assert own.metadata["fps"] == 4.0
    assert own.metadata["duration"] == 0.75
    configured = load_video(VideoSource(frames=frames), WHERE, ImageOptions(video_fps=1.5))
    assert configured.metadata["fps"] == 1.5
    assert configured.metadata["duration"] == 2.0
    assert configured.metadata["frames_indices"] == [0, 1, 2]
    assert levels(configured) == [0, 100, 200]


def test_frame_list_of_images_and_bytes(tmp_path):
    frames = write_frames(tmp_path / "frames", [40, 90])
    video = load_video(VideoSource(frames=(Image.open(frames[0]), frames[1].read_bytes())), WHERE)
    assert levels(video) == [40, 90]


def test_frames_of_different_sizes(tmp_path):
    sizes = [(WIDTH, HEIGHT), (WIDTH, HEIGHT), (16, 12)]
    frames = write_frames(tmp_path / "frames", [0, 10, 20], sizes)
    with pytest.raises(DataError) as caught:
        load_video(VideoSource(frames=frames), WHERE)
    assert str(caught.value).startswith(f"{WHERE}: video frame 2 is 16x12 pixels but frame 0 is 32x24")
    assert caught.value.kind == "image_size"
    assert caught.value.fix


def test_missing_frame(tmp_path):
    frames = (*write_frames(tmp_path / "frames", [0]), tmp_path / "frames" / "gone.png")
    with pytest.raises(DataError) as caught:
        load_video(VideoSource(frames=frames), WHERE)
    assert caught.value.kind == "missing_image"
    assert "gone.png" in str(caught.value)


def test_no_file_and_no_frames():
    with pytest.raises(DataError) as caught:
        load_video(VideoSource(), WHERE)
    assert caught.value.where == WHERE


def test_pixel_limits_files_and_lists(tmp_path, mkv):
    # 32x24 is 768 pixels, so a limit of 192 halves each side.
    options = ImageOptions(max_pixels=192, video_fps=2)
    from_file = load_video(VideoSource(file=mkv), WHERE, options)
    frames = write_frames(tmp_path / "frames", [0, 50, 100, 150])
    from_list = load_video(VideoSource(frames=frames), WHERE, options)
    for video in (from_file, from_list):
        assert video.frames.shape == (4, 12, 16, 3)
        assert video.metadata["height"] == 12
        assert video.metadata["width"] == 16
        assert np.array_equal(video.frames[2], gray(100, 16, 12))
    grown = load_video(VideoSource(file=mkv), WHERE, ImageOptions(min_pixels=3072, video_fps=2))
    assert grown.frames.shape == (4, 48, 64, 3)


def test_as_decoded(mkv):
    decoded = DecodedVideo(frames=np.zeros((1, 2, 2, 3), np.uint8), metadata={"fps": 1.0})
    assert as_decoded(decoded, WHERE) is decoded
    video = as_decoded(VideoSource(file=mkv), WHERE, ImageOptions(video_fps=1))
    assert video.metadata["frames_indices"] == [0, 10]
