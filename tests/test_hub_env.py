"""HF_HUB_ENABLE_HF_TRANSFER maps to hf_xet's high-performance mode."""

from __future__ import annotations

from vlmtune.hub_env import apply_fast_download_alias


def test_transfer_flag_enables_xet_high_performance():
    environ = {"HF_HUB_ENABLE_HF_TRANSFER": "1"}
    assert apply_fast_download_alias(environ) is True
    assert environ["HF_XET_HIGH_PERFORMANCE"] == "1"


def test_explicit_xet_setting_kept():
    environ = {"HF_HUB_ENABLE_HF_TRANSFER": "true", "HF_XET_HIGH_PERFORMANCE": "0"}
    assert apply_fast_download_alias(environ) is False
    assert environ["HF_XET_HIGH_PERFORMANCE"] == "0"


def test_unset_flag_changes_nothing():
    environ = {"HF_HUB_ENABLE_HF_TRANSFER": "0"}
    assert apply_fast_download_alias(environ) is False
    assert "HF_XET_HIGH_PERFORMANCE" not in environ


def test_package_import_applies_alias():
    import subprocess
    import sys

    code = "import vlmtune, huggingface_hub.constants as c; print(c.HF_XET_HIGH_PERFORMANCE)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"HF_HUB_ENABLE_HF_TRANSFER": "1", "HF_HUB_OFFLINE": "1", "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "True"
