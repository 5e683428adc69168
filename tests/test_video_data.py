"""Video samples from data files: the three record formats, their errors, and a whole training run.

The run trains a tiny Qwen2-VL on digit scans shown as short videos (an encoded file and a list of
frame images), so reading, validation, the report, training and saving all see real videos.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from tests.fixtures.families import all_fixtures
from tests.test_train_tiny import logged_losses, tiny_config
from vlmtune.collation.collator import VideoHandling
from vlmtune.config import ConfigError
from vlmtune.data.errors import DataError
from vlmtune.data.formats import record_to_sample
from vlmtune.data.schema import Sample, VideoSource
from vlmtune.training.preflight import check_media_batching
from vlmtune.training.recipe import run_training

SPECS = {fixture.name: fixture for fixture in all_fixtures()}
ROOT = Path("/data")


def answer(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def test_messages_video_parts_inline_and_from_column():
    record = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video", "video": "clips/a.mp4"},
                    {"type": "video", "video": ["f/0.png", "f/1.png"], "fps": 4},
                    {"type": "video"},
                    {"type": "text", "text": "What changes?"},
                ],
            },
            answer("the light"),
        ],
        "videos": ["clips/b.webm"],
    }
    sample = record_to_sample(record, "data.jsonl:1", ROOT)
    assert sample.messages[0]["content"][:3] == [{"type": "video"}] * 3
    assert sample.videos == [
        VideoSource(file=ROOT / "clips/a.mp4"),
        VideoSource(frames=(ROOT / "f/0.png", ROOT / "f/1.png"), fps=4.0),
        VideoSource(file=ROOT / "clips/b.webm"),
    ]
    assert sample.images == []


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "video"}]}, answer("x")]},
            "data.jsonl:2: message 0: a video part has no source",
        ),
        (
            {"messages": [{"role": "user", "content": "hi"}, answer("x")], "videos": ["a.mp4"]},
            "data.jsonl:2: the sample lists 1 video but its messages have 0 video parts.",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "video", "video": "a.mp4", "fps": 0}]}, answer("x")]},
            "data.jsonl:2: message 0: a video's `fps` must be a positive number, got 0.",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "video", "video": []}]}, answer("x")]},
            "data.jsonl:2: message 0: a video given as frames needs at least one frame.",
        ),
    ],
)
def test_messages_video_errors_name_the_record(record, message):
    with pytest.raises(DataError) as raised:
        record_to_sample(record, "data.jsonl:2", ROOT)
    assert str(raised.value).startswith(message)


def test_sharegpt_video_placeholders():
    record = {
        "conversations": [
            {"from": "human", "value": "<image>\nCompare with <video>\nWhat moved?"},
            {"from": "gpt", "value": "the cat"},
        ],
        "images": ["still.png"],
        "videos": [["f0.png", "f1.png", "f2.png"]],
    }
    sample = record_to_sample(record, "chat.json:5", ROOT)
    assert sample.messages[0]["content"] == [
        {"type": "image"},
        {"type": "text", "text": "Compare with "},
        {"type": "video"},
        {"type": "text", "text": "What moved?"},
    ]
    assert sample.images == [ROOT / "still.png"]
    assert sample.videos == [VideoSource(frames=(ROOT / "f0.png", ROOT / "f1.png", ROOT / "f2.png"))]


@pytest.mark.parametrize(
    ("text", "listed", "message"),
    [
        (
            "<video> and <video>",
            {"video": "one.mp4"},
            "chat.json:6: the conversation has 2 <video> placeholders but the record lists 1 video. "
            "Put one <video> in the text for each video, where the video belongs.",
        ),
        (
            "<video>\nWhat?",
            {"image": "clip.mp4"},
            "chat.json:6: the conversation has 0 <image> placeholders but the record lists 1 image. "
            "The text has 1 <video> placeholder: list those under `videos`.",
        ),
    ],
    ids=["count_mismatch", "video_listed_as_image"],
)
def test_sharegpt_video_placeholder_errors(text, listed, message):
    record = {"conversations": [{"from": "human", "value": text}, {"from": "gpt", "value": "x"}], **listed}
    with pytest.raises(DataError) as raised:
        record_to_sample(record, "chat.json:6", ROOT)
    assert str(raised.value) == message


def test_video_in_image_part_hint(tmp_path):
    from vlmtune.data.images import load_image

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not an image")
    with pytest.raises(DataError) as raised:
        load_image(clip, "data.jsonl:4")
    assert str(raised.value).startswith(f"data.jsonl:4: image {clip} is not a readable image (")
    assert str(raised.value).endswith(
        'For a video, use a {"type": "video"} part (or the `video`/`videos` column) instead of an image.'
    )


def test_prompt_answer_video_column():
    record = {"question": "What happens?", "answer": "rain", "video": "clips/rain.mp4"}
    sample = record_to_sample(record, "qa.csv:3", ROOT)
    assert sample.messages[0]["content"] == [{"type": "video"}, {"type": "text", "text": "What happens?"}]
    assert sample.videos == [VideoSource(file=ROOT / "clips/rain.mp4")]


def write_digit_videos(folder: Path, count: int) -> Path:
    """Write `count` digit samples: even ones as an FFV1 video file, odd ones as a list of PNG frames.

    Each video shows one digit scan drifting one pixel per frame, and the assistant's reply is the digit.
    """
    digits = load_digits()
    (folder / "clips").mkdir(parents=True)
    lines = []
    for index in range(count):
        scan = (digits.images[index] * (255 / 16)).astype(np.uint8)
        frames = [
            np.stack([np.roll(np.kron(scan, np.ones((4, 4), np.uint8)), shift, axis=1)] * 3, -1) for shift in range(4)
        ]
        if index % 2 == 0:
            video: str | list[str] = f"clips/{index}.mkv"
            with av.open(str(folder / video), "w") as container:
                stream = container.add_stream("ffv1", rate=2)
                stream.width, stream.height, stream.pix_fmt = 32, 32, "bgr0"
                for frame in frames:
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                container.mux(stream.encode())
        else:
            video = []
            for position, frame in enumerate(frames):
                Image.fromarray(frame).save(folder / "clips" / f"{index}-{position}.png")
                video.append(f"clips/{index}-{position}.png")
        content = [{"type": "video", "video": video}, {"type": "text", "text": "Which digit?"}]
        lines.append(
            json.dumps({"messages": [{"role": "user", "content": content}, answer(str(digits.target[index]))]})
        )
    path = folder / "videos.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_training_on_videos_end_to_end(tmp_path, capsys):
    model_dir = SPECS["qwen2_vl"].build(tmp_path / "model")
    data = write_digit_videos(tmp_path / "data", 16)
    config = tiny_config(model_dir, data, tmp_path / "run", train_projector=True)
    config.training.max_steps = 6
    config.training.batch_size = 4
    config.evaluation.eval_batch_size = 4
    summary = run_training(config)

    assert summary["steps"] == 6
    assert summary["train_samples"] == 12
    # One digit plus <|im_end|> per sample.
    assert summary["supervised_tokens"] == 2 * 12
    report = json.loads((tmp_path / "run" / "validation_report.json").read_text())
    train = report["splits"]["train"]
    assert train["videos_per_sample"] == {"1": 12}
    assert train["budget"]["videos"] == 12
    # 2 fps over a 2-second file, or 4 listed frames, gives 4 frames. Each frame is resized to 28x28,
    # one 2x2 group of 14-pixel patches, and frames pair up in time: 2 video tokens per sample.
    assert train["tokens"]["image"]["min"] == train["tokens"]["image"]["max"] == 2
    media = json.loads((tmp_path / "run" / "final" / "vlmtune_media.json").read_text())
    assert media["video_fps"] == 2.0
    assert media["video_max_frames"] == 32
    printed = capsys.readouterr().out
    assert "  videos per sample: 1 video(s): 12 (video frames count as image tokens)\n" in printed
    assert "(24 image, 24 supervised), 0 images, 12 videos\n" in printed
    losses = logged_losses(tmp_path / "run")
    assert len(losses) == 6
    assert losses[-1] < losses[0]
    assert summary["saved"] == "adapter"
    assert (tmp_path / "run" / "final" / "adapter_config.json").is_file()


def test_smolvlm_rejects_mixed_media_batches(tmp_path):
    from tests.conftest import write_digit_jsonl

    model_dir = SPECS["smolvlm"].build(tmp_path / "model")
    images = write_digit_jsonl(tmp_path / "images", list(range(8)))
    videos = write_digit_videos(tmp_path / "videos", 8)
    config = tiny_config(model_dir, f"{images},{videos}", tmp_path / "run")
    config.data.max_length = 512
    with pytest.raises(ConfigError) as raised:
        run_training(config)
    message = str(raised.value)
    assert message.startswith(
        "The processor of this model (SmolVLMProcessor) cannot take images and videos in one batch"
    )
    assert "--batch-size is 8 and its samples include an image" in message
    assert "so set --batch-size 1" in message
    assert "so set --eval-batch-size 1" in message


def media_sample(source: str, image: bool, video: bool) -> Sample:
    parts = [{"type": "image"}] * image + [{"type": "video"}] * video
    return Sample(
        messages=[{"role": "user", "content": parts}, answer("1")],
        images=[ROOT / "a.png"] * image,
        videos=[VideoSource(file=ROOT / "a.mp4")] * video,
        source=source,
    )


class NoMixingCollator:
    processor = SimpleNamespace()
    video = VideoHandling(mixes_with_images=False)


def test_media_batching_checks_each_split_alone():
    train = [media_sample("train.jsonl:1", True, False), media_sample("train.jsonl:2", False, True)]
    videos_only = [media_sample("val.jsonl:1", False, True), media_sample("val.jsonl:2", False, True)]
    images_only = [media_sample("val.jsonl:1", True, False)]

    check_media_batching(NoMixingCollator(), {"--batch-size": (train, 1), "--eval-batch-size": (videos_only, 8)})
    check_media_batching(NoMixingCollator(), {"--batch-size": (images_only, 8), "--eval-batch-size": (videos_only, 8)})

    with pytest.raises(ConfigError) as raised:
        check_media_batching(NoMixingCollator(), {"--batch-size": (videos_only, 4), "--eval-batch-size": (train, 2)})
    message = str(raised.value)
    assert message == (
        "The processor of this model (SimpleNamespace) cannot take images and videos in one batch. "
        "--eval-batch-size is 2 and its samples include an image (train.jsonl:1) and a video (train.jsonl:2), "
        "so set --eval-batch-size 1. Or train on images and videos in separate runs."
    )


def test_plan_shows_video_tokens_and_supervised_answer(tmp_path):
    from vlmtune.planning import describe

    model_dir = SPECS["qwen2_vl"].build(tmp_path / "model")
    data = write_digit_videos(tmp_path / "data", 4)
    text = describe(tiny_config(model_dir, data, tmp_path / "run"))
    digit = load_digits().target[0]
    assert "<|video_pad|> (id " in text
    assert "<|vision_start|><|video_pad|>*2<|vision_end|>Which digit?<|im_end|>" in text
    assert f"[[{digit}<|im_end|>]]" in text


def test_chat_attaches_a_video(tmp_path):
    import io

    from vlmtune.config import ModelConfig
    from vlmtune.data.schema import DecodedVideo, Sample
    from vlmtune.evaluation.generation import GenerationSettings, generate_answers
    from vlmtune.inference.chat import run_chat
    from vlmtune.models.loading import load_model, load_processor

    model_dir = SPECS["qwen2_vl"].build(tmp_path / "model")
    write_digit_videos(tmp_path / "data", 1)
    clip = tmp_path / "data" / "clips" / "0.mkv"
    config = ModelConfig(model=str(model_dir), dtype="float32")
    model, processor = load_model(config), load_processor(config)
    settings = GenerationSettings(max_new_tokens=3)
    screen = io.StringIO()
    typed = io.StringIO(f"/video\n/video {tmp_path / 'absent.mp4'}\n/video {clip}\nWhich digit?\n/quit\n")
    session = run_chat(model, processor, settings, typed, screen)

    output = screen.getvalue()
    assert "error: /video needs a path, e.g. /video clip.mp4" in output
    assert f"/video: video file {tmp_path / 'absent.mp4'} not found." in output
    assert f"(video {clip} attached to your next message)" in output
    assert session.messages[0]["content"] == [{"type": "video"}, {"type": "text", "text": "Which digit?"}]
    assert len(session.videos) == 1 and isinstance(session.videos[0], DecodedVideo)
    assert session.videos[0].frames.shape == (4, 32, 32, 3)
    reply = output.split("model> ")[1].splitlines()[0]
    alone = Sample(messages=[*session.messages[:1], {"role": "assistant", "content": []}], videos=session.videos)
    assert reply == generate_answers(model, processor, [alone], batch_size=1, settings=settings)[0]


def test_chat_recovers_from_rejected_turn(tmp_path):
    import io

    from tests.conftest import write_digit_jsonl
    from vlmtune.config import ModelConfig
    from vlmtune.data.images import ImageOptions
    from vlmtune.evaluation.generation import GenerationSettings
    from vlmtune.inference.chat import run_chat
    from vlmtune.models.loading import load_model, load_processor

    model_dir = SPECS["smolvlm"].build(tmp_path / "model")
    write_digit_videos(tmp_path / "data", 1)
    clip = tmp_path / "data" / "clips" / "0.mkv"
    write_digit_jsonl(tmp_path / "images", [0])
    image = next((tmp_path / "images").rglob("*.png"))
    config = ModelConfig(model=str(model_dir), dtype="float32")
    model, processor = load_model(config), load_processor(config)
    screen = io.StringIO()
    typed = io.StringIO(f"/image {image}\nWhich digit?\n/video {clip}\nAnd here?\n/reset\n/video {clip}\nHere?\n")
    session = run_chat(
        model, processor, GenerationSettings(max_new_tokens=2), typed, screen, options=ImageOptions(video_max_frames=2)
    )

    output = screen.getvalue()
    assert output.count("model> ") == 2
    assert (
        "error: the model cannot take this conversation: the sample has both an image and a video, which this "
        "model's processor (SmolVLMProcessor) cannot take together. Use /reset to start over.\n"
    ) in output
    # After /reset only the video turn is left, with the frame limit applied.
    assert session.messages[0]["content"] == [{"type": "video"}, {"type": "text", "text": "Here?"}]
    assert session.images == []
    assert session.videos[0].frames.shape[0] == 2


def test_media_settings_saved_and_read_back(tmp_path):
    from vlmtune.data.images import DEFAULT_OPTIONS, ImageOptions
    from vlmtune.data.media_settings import MEDIA_SETTINGS_FILE, load_media_settings, save_media_settings

    assert load_media_settings(tmp_path) == DEFAULT_OPTIONS
    assert load_media_settings("org/hub-model") == DEFAULT_OPTIONS
    save_media_settings(tmp_path, ImageOptions(max_pixels=4096, video_fps=4.0, video_max_frames=3, url_timeout=1.0))
    assert json.loads((tmp_path / MEDIA_SETTINGS_FILE).read_text()) == {
        "max_image_pixels": 4096,
        "min_image_pixels": None,
        "max_aspect_ratio": 50.0,
        "video_fps": 4.0,
        "video_max_frames": 3,
    }
    # Download settings belong to the machine, so they come back as the defaults.
    assert load_media_settings(tmp_path) == ImageOptions(max_pixels=4096, video_fps=4.0, video_max_frames=3)

    (tmp_path / MEDIA_SETTINGS_FILE).write_text('{"video_fps": 4.0, "frames": 3}')
    with pytest.raises(ConfigError, match=r"vlmtune_media\.json has unknown keys \['frames'\]\. Valid keys: "):
        load_media_settings(tmp_path)

    (tmp_path / MEDIA_SETTINGS_FILE).write_text("[4.0]")
    with pytest.raises(ConfigError, match=r"vlmtune_media\.json must contain a JSON object, not list\."):
        load_media_settings(tmp_path)


def test_evaluate_and_predict_use_saved_media_settings(tmp_path, monkeypatch):
    from vlmtune.config import EvaluateConfig, ModelConfig, PredictConfig
    from vlmtune.data.images import ImageOptions
    from vlmtune.data.media_settings import save_media_settings
    from vlmtune.evaluation import report
    from vlmtune.evaluation.generation import EvaluationResult
    from vlmtune.inference import predict

    saved = ImageOptions(video_fps=4.0, video_max_frames=3)
    final = tmp_path / "final"
    final.mkdir()
    save_media_settings(final, saved)
    data = write_digit_videos(tmp_path / "data", 2)
    seen = []

    def fake_load(config, base_model=None):
        return SimpleNamespace(model=None, processor=None, source=config.model)

    def fake_evaluate(model, processor, samples, metric_names, **kwargs):
        seen.append(samples)
        return EvaluationResult(accuracy=0.0, metrics={"exact_match": 0.0}, predictions=[], seconds=0.0, num_samples=0)

    def fake_generate(model, processor, samples, **kwargs):
        seen.append(samples)
        return ["0"] * len(samples)

    monkeypatch.setattr(report, "load_for_inference", fake_load)
    monkeypatch.setattr(report, "evaluate_samples", fake_evaluate)
    monkeypatch.setattr(predict, "load_for_inference", fake_load)
    monkeypatch.setattr(predict, "generate_answers", fake_generate)
    model = ModelConfig(model=str(final))
    report.run_evaluation(EvaluateConfig(model=model, data=str(data), output_dir=str(tmp_path / "eval")))
    predict.run_prediction(PredictConfig(model=model, data=str(data), output=str(tmp_path / "predictions.jsonl")))

    assert len(seen) == 2
    assert [sample.image_options for sample in seen[0]] == [saved, saved]
    assert [sample.image_options for sample in seen[1]] == [saved, saved]
