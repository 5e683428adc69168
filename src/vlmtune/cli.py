"""Command-line entry points: `vlmtune <command>`; `python train.py` is `vlmtune train`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

from vlmtune.config import DEMO, ConfigError, TrainConfig, parse_cli
from vlmtune.data.errors import DataError


def setup_logging() -> None:
    """Log INFO and above from this project, WARNING and above from libraries, one line each."""
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.WARNING)
    logging.getLogger("vlmtune").setLevel(logging.INFO)


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


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": train_command,
    "plan": plan_command,
    "build-demo": build_demo_command,
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
