"""Typed run configuration: one set of dataclasses, filled from a YAML file and command-line flags.

Each field's docstring is its `--help` text. The YAML file mirrors the sections below (`model:`,
`data:`, `finetune:`, `training:`, `evaluation:`). Flags override the file. The resolved
configuration is written next to the outputs, so a run can be repeated exactly.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import tyro
import yaml

DEMO = "demo"

ConfigT = TypeVar("ConfigT")


@dataclass
class ModelConfig:
    model: str = DEMO
    """Hugging Face hub id or local folder of an image-text-to-text model (loaded with
    AutoModelForImageTextToText and AutoProcessor). `demo` builds the offline demo VLM:
    SmolVLM with the pretrained SmolLM2-135M-Instruct language model."""

    revision: str | None = None
    """Hub revision (branch, tag or commit) of the model. None: the default branch."""

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Dtype for weights and compute. auto: bfloat16 on a GPU that supports it, else float32."""

    attn_implementation: str | None = None
    """Attention kernel passed to transformers (`sdpa`, `eager`, `flash_attention_2`). None: the
    transformers default."""

    trust_remote_code: bool = False
    """Allow model code from the hub repository to run. Off by default because it executes code
    that the model's authors wrote."""


@dataclass
class DataConfig:
    data: str = DEMO
    """Training data: one source, or several separated by commas, each `LOCATION[#SPLIT][@WEIGHT]`.
    LOCATION is a .jsonl/.json file (records in the `messages`, ShareGPT `conversations` or
    question/answer form), a .parquet/.arrow/.csv file, a save_to_disk folder, an image folder with a
    metadata.jsonl/.csv, or `hub:ORG/NAME[:CONFIG]` (downloaded with datasets.load_dataset). SPLIT
    picks a split of a dataset (default train). With weights, for example
    `a.jsonl@3,b.parquet@1`, each source contributes total x weight / sum of weights samples
    (repeated or subsampled with the seed). `demo` writes scikit-learn's handwritten digits as
    PNG files and uses them."""

    eval_data: str | None = None
    """Validation data in the same syntax as `data` (weights ignored). None: a deterministic
    `eval_fraction` of `data` is held out before mixing (for `demo`, the digits' own validation split)."""

    eval_fraction: float = 0.1
    """Fraction of `data` held out for validation when `eval_data` is not set (above 0, at most 0.5)."""

    image_root: str | None = None
    """Folder that relative image paths are resolved against. None: the folder of the data file."""

    max_length: int = 2048
    """Maximum sequence length in tokens, image tokens included. A longer sample is an error
    rather than being truncated, because truncation could cut an image's tokens."""

    max_train_samples: int | None = None
    """Use only the first N training samples (for quick trials). None: all."""

    dataloader_workers: int | None = None
    """DataLoader worker processes per training process that decode images and run the processor
    while the model trains. 0: in the training process. None: on a GPU, half the CPU cores up to
    4; on CPU-only machines 0, because workers would take cores from the training itself."""

    data_format: Literal["auto", "messages", "sharegpt", "prompt_answer"] = "auto"
    """Record format of the data. auto: detected per record (a `messages` key, a `conversations`
    key, or question/prefix/prompt plus answer/suffix/response columns)."""

    max_image_pixels: int | None = None
    """Downscale larger images to this many pixels (width x height), keeping the aspect ratio,
    before the processor receives them. None: no limit."""

    min_image_pixels: int | None = None
    """Upscale smaller images to this many pixels, keeping the aspect ratio. None: no limit."""

    max_aspect_ratio: float = 50.0
    """Reject (per `bad_samples`) an image whose long side exceeds its short side this many times."""

    decode_pixel_limit: int = 89_478_485
    """Reject an image file whose header declares more pixels than this, before decoding it
    (decompression-bomb guard; the default is Pillow's warning threshold)."""

    processor_min_pixels: int | None = None
    """Family option for processors that resize by pixel count (Qwen2-VL, Qwen2.5-VL, GLM-4V and
    others with `min_pixels`): the smallest image the processor resizes to. None: the model's default."""

    processor_max_pixels: int | None = None
    """Family option like `processor_min_pixels`: the largest image the processor resizes to, which
    bounds the image tokens per image. None: the model's default."""

    url_timeout: float = 30.0
    """Seconds to wait for a server when an image is an http(s) URL (downloads are cached on disk)."""

    url_max_bytes: int = 50_000_000
    """Largest image download accepted from an http(s) URL, in bytes."""

    video_fps: float = 2.0
    """Frames sampled per second of a video file, and the assumed rate of a video given as frames
    without its own `fps`. Higher: more frames, so more tokens per second of video."""

    video_max_frames: int = 32
    """Maximum number of frames kept per video. A longer video is sampled evenly across its whole
    length. Lower: fewer tokens per video (each frame costs about as many tokens as an image).
    InternVL and LLaVA-OneVision give every video exactly this many frames, because they batch
    videos only with equal frame counts."""

    bad_samples: Literal["fail", "skip"] = "fail"
    """Policy for samples that fail validation (missing or corrupt image, placeholder mismatch,
    no supervised token, over max_length). fail: stop before training and list them. skip: drop
    them and list each with its reason in skipped_samples.jsonl."""

    num_proc: int = 2
    """Worker processes for the validation pass that decodes and tokenizes every sample. 1: in
    the main process."""

    validation_cache: bool = True
    """Reuse the per-sample validation results cached for unchanged samples, images, processor and
    options, so a re-run skips the pass."""

    validation_report: str | None = None
    """Path of the JSON report that the validate command writes. None: validation_report.json in the
    current folder (training writes it into output_dir)."""


@dataclass
class FinetuneConfig:
    method: Literal["lora", "full"] = "lora"
    """lora: train low-rank adapters (peft) on the language model's linear layers; full: train all
    weights of the components selected below."""

    train_language_model: bool = True
    """Train the language model (its LoRA adapters with method=lora, its weights with method=full)."""

    train_vision: bool = False
    """Train the vision encoder's weights in full. Off by default: a pretrained encoder rarely
    needs it, and it costs memory."""

    train_projector: bool = False
    """Train the projector (connector) between the vision encoder and the language model in full."""

    lora_r: int = 16
    """LoRA rank. Higher: more capacity and memory."""

    lora_alpha: int = 32
    """LoRA scaling numerator; the update is scaled by lora_alpha / lora_r."""

    lora_dropout: float = 0.05
    """Dropout on the LoRA input during training."""

    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about 30% more compute."""


@dataclass
class TrainingConfig:
    output_dir: str | None = None
    """Folder for checkpoints, the final model and run_summary.json. It must not contain an
    earlier run unless `resume` is set, so nothing is overwritten. None: a new
    outputs/<model>-<date>-<time> folder."""

    epochs: float = 1.0
    """Passes over the training data (fractions allowed). Ignored when max_steps is set."""

    max_steps: int | None = None
    """Stop after this many optimizer steps. None: run `epochs`."""

    batch_size: int = 8
    """Samples per device per forward pass."""

    grad_accum: int = 1
    """Forward passes accumulated per optimizer step. Effective batch = batch_size x grad_accum x
    number of processes."""

    learning_rate: float = 1e-4
    """Peak learning rate of the AdamW optimizer."""

    weight_decay: float = 0.0
    """AdamW weight decay."""

    warmup_ratio: float = 0.03
    """Fraction of the steps spent warming the learning rate up linearly from 0."""

    lr_scheduler: str = "cosine"
    """Learning-rate schedule after warmup (any transformers scheduler name: linear, cosine,
    constant, ...)."""

    logging_steps: int = 10
    """Print one log line every N optimizer steps."""

    save_steps: int = 500
    """Save a resumable checkpoint every N optimizer steps."""

    save_total_limit: int = 2
    """Keep only the newest N checkpoints."""

    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """Autocast dtype for forward and backward passes; weights the optimizer updates stay in
    their loaded dtype. auto: bf16 on a GPU that supports it and on a CPU with native bf16
    instructions (AVX512-BF16 or AMX, about 1.5x faster than float32 on such a CPU), else none."""

    seed: int = 42
    """Seed for data order, the validation split and initialisation of new weights."""

    resume: bool = False
    """Continue from the newest checkpoint in output_dir."""

    report_to: str = "none"
    """Experiment tracker passed to transformers (`none`, `tensorboard`, `wandb`, ...)."""

    eval_steps: int | None = None
    """Compute the validation loss every N optimizer steps. None: every save_steps steps; 0: never."""


@dataclass
class EvaluationConfig:
    eval_before: bool = True
    """Measure the model on the validation split before training."""

    eval_after: bool = True
    """Measure the fine-tuned model on the validation split after training."""

    eval_samples: int | None = 500
    """Validation samples used for generation metrics (the first N). None: all."""

    eval_batch_size: int = 16
    """Samples per generation batch."""

    max_new_tokens: int = 64
    """Maximum tokens generated per answer."""

    metrics: str = "exact_match"
    """Comma-separated task metrics for generation-based evaluation: exact_match, relaxed_accuracy,
    vqa_accuracy, anls, cer, bleu, rouge_l, json_validity, json_field_accuracy, box_iou."""

    generation_eval_steps: int | None = None
    """Also generate answers for `generation_eval_samples` validation samples and log `metrics`
    every N optimizer steps during training. None: only before and after training."""

    generation_eval_samples: int = 32
    """Validation samples (the first N) scored by the generation metrics during training."""


@dataclass
class TrainConfig:
    """Fine-tune a vision language model and evaluate it before and after.

    When --model is `demo` (the default) and no --config is given, the built-in `demo` config is
    applied first, so the offline demo VLM (whose vision encoder starts untrained) learns to read
    handwritten digits on CPU. Flags still override it."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)


@dataclass
class ValidateConfig(TrainConfig):
    """Check the data against a model's processor before training: read every sample, decode every
    image, encode it as training would, and report problems and the token budget (printed, and
    written as JSON to --validation-report). Takes the same options and config files as train."""


@dataclass
class GenerationOptions:
    max_new_tokens: int | None = None
    """Maximum tokens generated per answer. None: the model's generation config, else 64."""

    do_sample: bool | None = None
    """Sample instead of greedy decoding. None: the model's generation config (greedy if unset)."""

    temperature: float | None = None
    """Sampling temperature (with do_sample). None: the model's generation config."""

    top_p: float | None = None
    """Nucleus sampling threshold (with do_sample). None: the model's generation config."""

    batch_size: int = 8
    """Samples per generation batch."""


@dataclass
class EvaluateConfig:
    """Evaluate a model or a LoRA adapter folder on a JSONL dataset.

    Writes predictions.jsonl (one line per sample with its reference) and metrics.json. With
    --baseline, the baseline model is evaluated on the same samples and both appear in one report."""

    model: ModelConfig = field(default_factory=ModelConfig)
    generation: GenerationOptions = field(default_factory=GenerationOptions)

    data: str | None = None
    """Data to evaluate on, in any form that train's --data accepts; each sample's last assistant
    message is the reference."""

    image_root: str | None = None
    """Folder that relative image paths are resolved against. None: the folder of the data file."""

    output_dir: str | None = None
    """Folder for predictions and metrics; it must be new or empty. None: outputs/eval-<model>-<time>."""

    metrics: str = "exact_match"
    """Comma-separated metrics: exact_match, relaxed_accuracy, vqa_accuracy, anls, cer, bleu,
    rouge_l, json_validity, json_field_accuracy, box_iou."""

    max_samples: int | None = None
    """Evaluate only the first N samples. None: all."""

    base_model: str | None = None
    """Base model for an adapter folder. None: the one named in its adapter_config.json."""

    baseline: str | None = None
    """A second model to compare against in the same report; `base`: the adapter's base model."""


@dataclass
class PredictConfig:
    """Generate answers with a model or LoRA adapter for a JSONL dataset or a folder of images."""

    model: ModelConfig = field(default_factory=ModelConfig)
    generation: GenerationOptions = field(default_factory=GenerationOptions)

    data: str | None = None
    """Data whose prompts (everything before the last answer) are answered, in any form that
    train's --data accepts."""

    images: str | None = None
    """Folder of images (png, jpg, jpeg, webp, bmp, gif, tif, tiff), each answered with --prompt."""

    prompt: str | None = None
    """The question asked about every image of --images."""

    image_root: str | None = None
    """Folder that relative image paths in --data are resolved against. None: the data file's folder."""

    output: str | None = None
    """JSONL file for the predictions; it must not exist yet."""

    base_model: str | None = None
    """Base model for an adapter folder. None: the one named in its adapter_config.json."""


@dataclass
class ChatConfig:
    """Chat with a model or LoRA adapter in the terminal.

    Type a message and press Enter. `/image PATH` attaches an image to your next message, `/video
    PATH` a video file, `/reset` starts a new conversation, `/quit` (or end of input) leaves."""

    model: ModelConfig = field(default_factory=ModelConfig)
    generation: GenerationOptions = field(default_factory=GenerationOptions)

    image: str | None = None
    """Image attached to the first message."""

    system: str | None = None
    """System message that starts every conversation."""

    base_model: str | None = None
    """Base model for an adapter folder. None: the one named in its adapter_config.json."""


@dataclass
class MergeConfig:
    """Merge a LoRA adapter into its base model and save a standalone model.

    The output loads with AutoModelForImageTextToText and AutoProcessor alone (no peft)."""

    adapter: str | None = None
    """Adapter folder (with adapter_config.json), e.g. the `final` folder of a LoRA run."""

    output_dir: str | None = None
    """Folder for the merged model; it must be new or empty."""

    base_model: str | None = None
    """Base model. None: the one named in the adapter's adapter_config.json."""

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Dtype of the merged weights. auto: the base model's stored dtype."""

    push_to_hub: str | None = None
    """Also upload the merged folder to this Hub repository (`user/name`). None: no upload."""

    private: bool = True
    """Create the Hub repository as private (with --push-to-hub)."""


class ConfigError(ValueError):
    """A configuration file or value that cannot be used."""


def _merge_section(section: Any, values: dict[str, Any], where: str) -> Any:
    """Return a copy of dataclass `section` with `values` applied, rejecting unknown keys."""
    known = {f.name: f for f in dataclasses.fields(section)}
    updates = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}. Known keys: {', '.join(sorted(known))}.")
        current = getattr(section, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{key}: expected a mapping, got {value!r}.")
            updates[key] = _merge_section(current, value, f"{where}.{key}")
        else:
            updates[key] = value
    return dataclasses.replace(section, **updates)


def load_yaml_config(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a YAML configuration file on top of `base` (the defaults when None)."""
    return _merge_section(base or TrainConfig(), _read_yaml_mapping(str(path)), str(path))


def config_to_dict(config: Any) -> dict[str, Any]:
    """Convert a configuration dataclass to plain data (for YAML and JSON)."""
    return dataclasses.asdict(config)


def save_config(config: Any, path: Path) -> None:
    """Write the resolved configuration as YAML."""
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def _split_config_flag(argv: list[str]) -> tuple[str | None, list[str]]:
    """Take `--config FILE` (or `--config=FILE`) out of argv."""
    rest = []
    config_path = None
    iterator = iter(argv)
    for arg in iterator:
        if arg == "--config":
            config_path = next(iterator, None)
            if config_path is None:
                raise ConfigError("--config needs a YAML file path.")
        elif arg.startswith("--config="):
            config_path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return config_path, rest


def parse_cli(config_class: type[ConfigT], argv: list[str] | None = None, prog: str | None = None) -> ConfigT:
    """Parse `--config FILE.yaml` plus flags into `config_class`; flags win over the file.

    Flags have no section prefix (`--learning-rate`, not `--training.learning-rate`), so every
    field name is unique across sections.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    config_path, rest = _split_config_flag(argv)
    default = config_class()
    if config_path is not None:
        default = _merge_section(default, _read_yaml_mapping(config_path), config_path)
    description = inspect.cleandoc(config_class.__doc__ or "")
    # The built-in configs are training runs, so only the commands that take a run's options read them.
    if issubclass(config_class, TrainConfig):
        description += (
            "\n\nAll options can also come from a YAML file: --config FILE.yaml, or a built-in config name"
            " such as `demo` (flags override it)."
        )
    elif len(dataclasses.fields(config_class)) > 1:
        description += "\n\nAll options can also come from a YAML file: --config FILE.yaml (flags override it)."
    return tyro.cli(
        config_class,
        args=rest,
        default=default,
        prog=prog,
        description=description,
        config=(tyro.conf.OmitArgPrefixes,),
    )


BUILTIN_CONFIGS = Path(__file__).parent / "configs"


def resolve_config_path(name: str) -> Path:
    """Return `name` as a file path, or the built-in config of that name (`demo`, `qwen2_5_vl/3b_lora`)."""
    path = Path(name)
    if path.is_file():
        return path
    builtin = BUILTIN_CONFIGS / f"{name.removesuffix('.yaml')}.yaml"
    if builtin.is_file():
        return builtin
    available = sorted(str(p.relative_to(BUILTIN_CONFIGS).with_suffix("")) for p in BUILTIN_CONFIGS.rglob("*.yaml"))
    raise ConfigError(
        f"Config file {path} not found, and no built-in config is named {name!r}. Built-in: {', '.join(available)}."
    )


def _read_yaml_mapping(path: str) -> dict[str, Any]:
    file = resolve_config_path(path)
    values = yaml.safe_load(file.read_text()) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{file}: expected a mapping of sections (model, data, ...), got {type(values).__name__}.")
    return values
