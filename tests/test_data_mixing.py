"""The --data syntax, weighted mixing of several sources and the deterministic validation split."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.fixtures.data_files import messages_record, write_jsonl
from vlmtune.config import DataConfig
from vlmtune.data.errors import DataError
from vlmtune.data.loading import load_data
from vlmtune.data.sources import SourceSpec, parse_data_spec


def test_parse_sources_splits_weights_and_hub_ids():
    assert parse_data_spec("a.jsonl@3, hub:org/name:cfg#test@0.5,folder#validation") == [
        SourceSpec("a.jsonl", None, 3.0),
        SourceSpec("org/name", "test", 0.5, hub=True, config_name="cfg"),
        SourceSpec("folder", "validation", None),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.jsonl@x", "a.jsonl@x: weight 'x' is not a number."),
        ("a.jsonl@0", "a.jsonl@0: weight 0 must be positive."),
        ("a.jsonl,,b.jsonl", "a.jsonl,,b.jsonl: empty source in the --data list (two commas or a trailing comma)."),
        ("hub:name", "hub:name: hub:name is not a Hub dataset id of the form ORG/NAME."),
    ],
)
def test_bad_spec_messages(text, message):
    with pytest.raises(DataError) as raised:
        parse_data_spec(text)
    assert str(raised.value) == message


def write_source(path, name: str, count: int):
    return write_jsonl(path, [messages_record(None, f"{name} {i}", "ok") for i in range(count)])


def source_counts(samples) -> Counter:
    return Counter(sample.messages[0]["content"][0]["text"].split()[0] for sample in samples)


def test_weights_set_each_source_share(tmp_path):
    big = write_source(tmp_path / "big.jsonl", "big", 6)
    small = write_source(tmp_path / "small.jsonl", "small", 2)
    validation = write_source(tmp_path / "eval.jsonl", "eval", 2)
    config = DataConfig(data=f"{big}@1,{small}@1", eval_data=str(validation))
    loaded = load_data(config, seed=0)
    # 8 samples in all, half each: 4 of the 6 big ones, and the 2 small ones twice.
    assert source_counts(loaded.train) == {"big": 4, "small": 4}
    assert len({id(sample) for sample in loaded.train}) == 6
    assert [s.source for s in load_data(config, seed=0).train] == [s.source for s in loaded.train]

    unweighted = load_data(DataConfig(data=f"{big},{small}", eval_data=str(validation)), seed=0)
    assert source_counts(unweighted.train) == {"big": 6, "small": 2}


def test_validation_carved_before_mixing(tmp_path):
    big = write_source(tmp_path / "big.jsonl", "big", 16)
    small = write_source(tmp_path / "small.jsonl", "small", 4)
    loaded = load_data(DataConfig(data=f"{big}@1,{small}@3", eval_fraction=0.25), seed=1)
    assert len(loaded.validation) == 5
    assert not {s.source for s in loaded.train} & {s.source for s in loaded.validation}
    assert len(loaded.train) == 15
    again = load_data(DataConfig(data=f"{big}@1,{small}@3", eval_fraction=0.25), seed=1)
    assert [s.source for s in again.validation] == [s.source for s in loaded.validation]


def test_weights_for_all_or_none(tmp_path):
    first = write_source(tmp_path / "a.jsonl", "a", 2)
    second = write_source(tmp_path / "b.jsonl", "b", 2)
    with pytest.raises(DataError, match=r"^--data: give a weight \(@W\) to every source or to none\.$"):
        load_data(DataConfig(data=f"{first}@2,{second}", eval_data=str(first)), seed=0)


def test_missing_path_suggests_hub_prefix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as raised:
        load_data(DataConfig(data="org/name", eval_data="org/name"), seed=0)
    assert str(raised.value) == (
        "org/name: data file or folder not found. Check the --data / --eval-data path. "
        "For a Hugging Face Hub dataset, write hub:org/name."
    )
