"""Configuration: YAML file plus flags, flags winning, unknown keys rejected."""

from __future__ import annotations

import pytest
import yaml

from vlmtune.config import ConfigError, TrainConfig, load_yaml_config, parse_cli


def test_flags_override_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump({"model": {"model": "org/vlm"}, "training": {"learning_rate": 0.5, "batch_size": 3}})
    )
    config = parse_cli(TrainConfig, ["--config", str(path), "--learning-rate", "0.25", "--train-vision"])
    assert config.model.model == "org/vlm"
    assert config.training.learning_rate == 0.25
    assert config.training.batch_size == 3
    assert config.finetune.train_vision is True


def test_defaults_without_file():
    config = parse_cli(TrainConfig, ["--method", "full", "--max-steps", "7"])
    assert config.finetune.method == "full"
    assert config.training.max_steps == 7
    assert config.model.model == "demo"


def test_unknown_yaml_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"training": {"learning_rat": 1.0}}))
    with pytest.raises(ConfigError, match=r"bad\.yaml\.training: unknown key 'learning_rat'"):
        load_yaml_config(path)


def test_unknown_section(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"optimizer": {"lr": 1.0}}))
    with pytest.raises(ConfigError, match="unknown key 'optimizer'"):
        load_yaml_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        parse_cli(TrainConfig, ["--config", str(tmp_path / "none.yaml")])


def test_invalid_choice_exits():
    with pytest.raises(SystemExit):
        parse_cli(TrainConfig, ["--method", "qlora-magic"])


def test_builtin_configs_parse():
    from vlmtune.config import BUILTIN_CONFIGS

    names = sorted(str(path.relative_to(BUILTIN_CONFIGS).with_suffix("")) for path in BUILTIN_CONFIGS.rglob("*.yaml"))
    assert "demo" in names
    assert "qwen2_5_vl/3b_lora" in names
    for name in names:
        config = parse_cli(TrainConfig, ["--config", name])
        assert config.model.model


def test_builtin_config_by_name():
    config = parse_cli(TrainConfig, ["--config", "qwen2_5_vl/3b_lora", "--batch-size", "2"])
    assert config.model.model == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert config.training.batch_size == 2
    assert config.training.grad_accum == 4


@pytest.mark.parametrize(
    ("command", "note"),
    [
        ("train", "--config FILE.yaml, or a built-in config name such as `demo`"),
        ("evaluate", "All options can also come from a YAML file: --config FILE.yaml (flags override it)."),
        ("build-demo", None),
    ],
)
def test_help_config_note_per_command(command, note, capsys):
    from vlmtune.cli import BuildDemoConfig
    from vlmtune.config import EvaluateConfig

    config_class = {"train": TrainConfig, "evaluate": EvaluateConfig, "build-demo": BuildDemoConfig}[command]
    with pytest.raises(SystemExit):
        parse_cli(config_class, ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    if note is None:
        assert "--config" not in text
    else:
        assert note in text
