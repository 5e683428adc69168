"""Command-line entry points: `vlmtune <command>`; `python train.py` is `vlmtune train`."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from vlmtune.config import (
    DEMO,
    ChatConfig,
    ConfigError,
    EvaluateConfig,
    MergeConfig,
    PredictConfig,
    TrainConfig,
    ValidateConfig,
    parse_cli,
)
from vlmtune.data.errors import DataError


def setup_logging() -> None:
    """Log INFO and above from this project, WARNING and above from libraries, one line each."""
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.WARNING)
    logging.getLogger("vlmtune").setLevel(logging.INFO)
    # transformers warns about its own renamed internals when peft and Trainer call them; the
    # user cannot act on those, so they would only bury the training log.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")


def _flag_value(argv: list[str], flag: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == flag and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def with_demo_defaults(argv: list[str]) -> list[str]:
    """Prepend `--config demo` when the run is the demo and no config file was given.

    The demo needs settings that would be wrong for a pretrained model (a fresh vision encoder
    trained at a high learning rate), so they live in the built-in demo config, not in the defaults.
    """
    asks_help = any(arg in ("-h", "--help") for arg in argv)
    has_config = any(arg == "--config" or arg.startswith("--config=") for arg in argv)
    if asks_help or has_config or _flag_value(argv, "--model") not in (None, DEMO):
        return argv
    return ["--config", "demo", *argv]


def train_command(argv: list[str]) -> int:
    """Fine-tune a model (the default command)."""
    config = parse_cli(TrainConfig, with_demo_defaults(argv), prog="train.py")
    from vlmtune.training.recipe import OutputDirError, default_output_dir, run_training

    if config.training.output_dir is None:
        config.training.output_dir = default_output_dir(config.model.model)
    try:
        run_training(config)
    except OutputDirError as error:
        return _fail(error)
    return 0


@dataclass
class PlanConfig(TrainConfig):
    """Print what `train` with the same options would train, without training: trainable parameters
    per component, LoRA targets, image tokens, and the first training sample with its supervised
    tokens marked."""


def plan_command(argv: list[str]) -> int:
    config = parse_cli(PlanConfig, with_demo_defaults(argv), prog="vlmtune plan")
    from vlmtune.planning import describe

    print(describe(config, color=sys.stdout.isatty()))
    return 0


@dataclass
class BuildDemoConfig:
    """Build the offline demo model and write the digits dataset into the cache, then print where."""

    force: bool = False
    """Rebuild the model even if a complete build is already cached."""


def build_demo_command(argv: list[str]) -> int:
    config = parse_cli(BuildDemoConfig, argv, prog="vlmtune build-demo")
    from vlmtune.demo.data import write_digits_dataset
    from vlmtune.demo.model import build_demo_model

    model_dir = build_demo_model(force=config.force)
    train_path, validation_path = write_digits_dataset()
    print(f"demo model: {model_dir}\ntraining data: {train_path}\nvalidation data: {validation_path}")
    return 0


def validate_command(argv: list[str]) -> int:
    """Validate the data and report its token budget without training."""
    config = parse_cli(ValidateConfig, with_demo_defaults(argv), prog="vlmtune validate")
    from vlmtune.validation.command import run_validate

    return run_validate(config)


def evaluate_command(argv: list[str]) -> int:
    """Score a model or adapter on a dataset; optionally compare with a baseline in one report."""
    config = parse_cli(EvaluateConfig, argv, prog="vlmtune evaluate")
    from vlmtune.evaluation.report import run_evaluation
    from vlmtune.models.adapters import AdapterLoadError

    try:
        run_evaluation(config)
    except AdapterLoadError as error:
        return _fail(error)
    return 0


def predict_command(argv: list[str]) -> int:
    """Answer a dataset's prompts, or one prompt for every image in a folder."""
    config = parse_cli(PredictConfig, argv, prog="vlmtune predict")
    from vlmtune.inference.predict import run_prediction
    from vlmtune.models.adapters import AdapterLoadError

    try:
        run_prediction(config)
    except AdapterLoadError as error:
        return _fail(error)
    return 0


def chat_command(argv: list[str]) -> int:
    """Chat with a model or adapter in the terminal."""
    config = parse_cli(ChatConfig, argv, prog="vlmtune chat")
    from vlmtune.data.media_settings import load_media_settings
    from vlmtune.evaluation.report import generation_settings
    from vlmtune.inference.chat import run_chat
    from vlmtune.models.adapters import AdapterLoadError, load_for_inference

    try:
        loaded = load_for_inference(config.model, config.base_model)
    except AdapterLoadError as error:
        return _fail(error)
    run_chat(
        loaded.model,
        loaded.processor,
        generation_settings(config.generation),
        image=config.image,
        system=config.system,
        options=load_media_settings(config.model.model),
    )
    return 0


def merge_command(argv: list[str]) -> int:
    """Merge a LoRA adapter into its base model; optionally upload the result to the Hub."""
    config = parse_cli(MergeConfig, argv, prog="vlmtune merge")
    from vlmtune.export.merge import merge_adapter
    from vlmtune.models.adapters import AdapterLoadError

    try:
        output_dir = merge_adapter(config)
    except AdapterLoadError as error:
        return _fail(error)
    print(f"merged model: {output_dir}")
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": train_command,
    "plan": plan_command,
    "build-demo": build_demo_command,
    "validate": validate_command,
    "evaluate": evaluate_command,
    "predict": predict_command,
    "chat": chat_command,
    "merge": merge_command,
}


def _fail(error: Exception) -> int:
    print(f"error: {error}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a command; without one, train."""
    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    command = train_command
    if argv and argv[0] in COMMANDS:
        command = COMMANDS[argv.pop(0)]
    elif argv and argv[0] in ("-h", "--help"):
        print("Commands: " + ", ".join(COMMANDS) + " (default: train). Options of train:\n")
    try:
        return command(argv)
    except (ConfigError, DataError) as error:
        return _fail(error)


if __name__ == "__main__":
    sys.exit(main())
