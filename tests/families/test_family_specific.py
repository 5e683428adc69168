"""Checks that only make sense for one family: exact image-token layouts per image geometry,
PaliGemma's prefix/suffix scheme, Gemma 3's token types, Mllama's cross-attention inputs, and
templates that write the end-of-turn token at the start of the next message."""

from __future__ import annotations

import pytest
import torch

from tests.families.contract_support import sample, text_only_sample
from tests.families.test_contract import collators, supervised_text
from tests.fixtures.families import all_fixtures
from tests.fixtures.families import gemma3 as gemma3_fixture
from tests.fixtures.families import idefics3 as idefics3_fixture
from vlmtune.collation.factory import build_collators
from vlmtune.collation.labels import IGNORE_INDEX
from vlmtune.config import DataConfig, ModelConfig
from vlmtune.data.errors import DataError
from vlmtune.data.schema import Sample
from vlmtune.evaluation.generation import generate_answers
from vlmtune.models.loading import load_model, load_processor
from vlmtune.validation.checks import check_sample
from vlmtune.validation.pipeline import check_settings

SPECS = {fixture.name: fixture for fixture in all_fixtures()}


def _load(name: str, tmp_path_factory):
    spec = SPECS[name]
    folder = spec.build(tmp_path_factory.mktemp(name))
    config = ModelConfig(model=str(folder), dtype="float32")
    return spec, load_model(config), load_processor(config)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Load fixtures by name on first use, once per module."""
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = _load(name, tmp_path_factory)
        return cache[name]

    return get


def count(batch, token_id: int, row: int = 0) -> int:
    return int((batch["input_ids"][row] == token_id).sum())


# --- Image-token expansion per geometry --------------------------------------------------------

# (family, (width, height), image tokens in the language model). The counts follow from each
# processor's geometry in the fixtures and are checked against the model by a forward pass.
IMAGE_TOKEN_COUNTS = [
    # Gemma 3: a fixed number of pooled soft tokens per image, whatever its size.
    ("gemma3", (32, 32), 4),
    ("gemma3", (100, 50), 4),
    # Idefics3: resized to a 64 px longest edge, split into 32 px tiles plus a global view, 4 tokens each.
    ("idefics3", (32, 32), (4 + 1) * 4),
    ("idefics3", (64, 32), (2 + 1) * 4),
    ("idefics3", (16, 48), (2 + 1) * 4),
    # Mistral 3: 8 px patches merged 2x2, so one [IMG] per 16 px cell (sides rounded up).
    ("mistral3", (32, 32), 2 * 2),
    ("mistral3", (48, 24), 3 * 2),
    ("mistral3", (70, 70), 4 * 4),
    # Pixtral: one [IMG] per 8 px patch, the longest edge capped at 64 px.
    ("llava_pixtral", (48, 24), 6 * 3),
    ("llava_pixtral", (70, 70), 8 * 8),
    # PaliGemma: a fixed 16 tokens (32 px image, 8 px patches).
    ("paligemma", (48, 24), 16),
    ("paligemma2", (20, 60), 16),
    # SmolVLM demo processor: one 32 px image, 16 patches shuffled into 4 tokens.
    ("smolvlm", (20, 60), 4),
    # Mllama: one <|image|> token; the tiles reach the model through cross-attention.
    ("mllama", (40, 40), 1),
]


@pytest.mark.parametrize(("name", "size", "expected"), IMAGE_TOKEN_COUNTS)
def test_image_token_count_per_geometry(built, name, size, expected):
    _, model, processor = built(name)
    training, _ = collators(model, processor)
    batch = training([sample(["yes"], sizes=(size,))])
    assert count(batch, model.config.image_token_id) == expected
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)


@pytest.mark.parametrize(("name", "size", "rows"), [("mistral3", (48, 24), 2), ("llava_pixtral", (48, 24), 3)])
def test_pixtral_row_break_tokens(built, name, size, rows):
    _, model, processor = built(name)
    training, _ = collators(model, processor)
    batch = training([sample(["yes"], sizes=(size,))])
    tokenizer = processor.tokenizer
    assert count(batch, tokenizer.convert_tokens_to_ids("[IMG_BREAK]")) == rows - 1
    assert count(batch, tokenizer.convert_tokens_to_ids("[IMG_END]")) == 1


# --- Mllama ------------------------------------------------------------------------------------

# (width, height) -> (aspect-ratio id, tiles): 16 px tiles, at most 4, ids index the supported
# ratios [1,1] [1,2] [1,3] [1,4] [2,1] [2,2] [3,1] [4,1] from 1.
MLLAMA_TILES = {(16, 16): (1, 1), (64, 32): (2, 2), (16, 48): (7, 3), (40, 40): (6, 4)}


def test_mllama_cross_attention_inputs(built):
    _, model, processor = built("mllama")
    training, _ = collators(model, processor)
    sizes = list(MLLAMA_TILES)
    batch = training([sample(["yes"], sizes=sizes[:2], seed=1), sample(["a longer answer"], sizes=sizes[2:], seed=3)])
    batch_size, length = batch["input_ids"].shape
    assert batch["cross_attention_mask"].shape == (batch_size, length, 2, 4)
    assert batch["aspect_ratio_ids"].tolist() == [
        [MLLAMA_TILES[size][0] for size in pair] for pair in (sizes[:2], sizes[2:])
    ]
    image_id = model.config.image_token_id
    for row, pair in enumerate((sizes[:2], sizes[2:])):
        positions = (batch["input_ids"][row] == image_id).nonzero().flatten().tolist()
        assert len(positions) == 2
        mask = batch["cross_attention_mask"][row]
        real = batch["attention_mask"][row] == 1
        # Text before the first image sees no tile; from it on, exactly the image's own tiles.
        assert mask[: positions[0]].sum() == 0
        for image_index, size in enumerate(pair):
            tiles = MLLAMA_TILES[size][1]
            after = mask[positions[1] :][real[positions[1] :], image_index]
            assert (after[:, :tiles] == 1).all()
            assert (after[:, tiles:] == 0).all()
        assert mask[~real].sum() == 0
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)


def test_mllama_text_only_rows(built):
    _, model, processor = built("mllama")
    training, _ = collators(model, processor)
    batch = training([text_only_sample(), sample(["yes"], sizes=((64, 32),))])
    text_row = int((batch["input_ids"] == model.config.image_token_id).sum(dim=1).argmin())
    assert batch["aspect_ratio_ids"][text_row].tolist() == [0]
    assert batch["aspect_ratio_mask"].shape[0] == 2
    assert batch["cross_attention_mask"][text_row].sum() == 0


# --- Gemma 3 -----------------------------------------------------------------------------------


def test_gemma3_system_prompt_folding(built):
    _, _, processor = built("gemma3")
    rendered = processor.apply_chat_template(
        sample(["red"], system="Be brief.").messages, tokenize=False, add_generation_prompt=False
    )
    assert rendered == (
        "<bos><start_of_turn>user\nBe brief.\n\n<start_of_image>Question 0?<end_of_turn>\n"
        "<start_of_turn>model\nred<end_of_turn>\n"
    )


def test_gemma3_token_types_change_attention(built):
    _, model, processor = built("gemma3")
    training, _ = collators(model, processor)
    batch = training([sample(["yes"])])
    image_positions = batch["input_ids"] == model.config.image_token_id
    assert torch.equal(batch["token_type_ids"] == 1, image_positions)
    without = {key: value for key, value in batch.items() if key != "token_type_ids"}
    with torch.no_grad():
        with_types = model(**batch).logits
        causal_only = model(**without).logits
    # Image tokens attend to each other both ways only when token_type_ids are passed.
    first_image = int(image_positions[0].nonzero()[0])
    assert not torch.allclose(with_types[0, first_image], causal_only[0, first_image], atol=1e-6)


# --- End-of-turn token written at the start of the next message --------------------------------

# Variants of the fixtures' templates that close a turn only when another message follows, by
# writing the end-of-turn token at the start of that message; the last turn stays open.
GEMMA3_LEADING_CLOSE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if not loop.first %}{{ '<end_of_turn>\n' }}{% endif %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n' }}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<start_of_image>' }}{% else %}{{ part['text'] | trim }}{% endif %}"
    "{% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<end_of_turn>\n<start_of_turn>model\n' }}{% endif %}"
)
IDEFICS3_LEADING_CLOSE = (
    "<|begin_of_text|>"
    "{% for message in messages %}"
    "{% if not loop.first %}<end_of_utterance>\n{% endif %}"
    "{{ message['role'] | capitalize }}:"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %} {{ part['text'] }}{% else %}<image>{% endif %}"
    "{% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<end_of_utterance>\nAssistant:{% endif %}"
)


@pytest.mark.parametrize(("name", "template"), [("gemma3", GEMMA3_LEADING_CLOSE), ("idefics3", IDEFICS3_LEADING_CLOSE)])
def test_end_of_turn_in_next_message(built, name, template):
    spec, model, processor = built(name)
    processor.chat_template, original = template, processor.chat_template
    try:
        training, _ = collators(model, processor)
        last_turn_open = processor.apply_chat_template(sample(["red"]).messages, tokenize=False)
        assert not last_turn_open.rstrip().endswith(spec.end_of_turn)
        batch = training([sample(["red", "blue"]), sample(["yes"], seed=2)])
        multi = supervised_text(processor, batch, 0).replace(" ", "")
        assert multi == f"red{spec.end_of_turn}blue{spec.end_of_turn}"
        assert supervised_text(processor, batch, 1).strip() == f"yes{spec.end_of_turn}"
        with torch.no_grad():
            assert torch.isfinite(model(**batch).loss)
    finally:
        processor.chat_template = original


# --- Mistral 3 and Pixtral system prompts -----------------------------------------------------


def test_mistral3_default_system_unsupervised(built):
    _, model, processor = built("mistral3")
    training, _ = collators(model, processor)
    batch = training([sample(["yes"])])
    rendered = processor.tokenizer.decode(batch["input_ids"][0])
    assert rendered.startswith("<s>[SYSTEM_PROMPT]You are a helpful assistant.[/SYSTEM_PROMPT][INST]")
    assert supervised_text(processor, batch, 0) == "yes</s>"


def test_pixtral_system_in_last_turn(built):
    _, model, processor = built("llava_pixtral")
    messages = sample(["red", "blue"], system="Be brief.").messages
    prompt = processor.apply_chat_template(messages[:4], tokenize=False, add_generation_prompt=True)
    # The released template writes the system prompt into the last user turn only, so earlier
    # prompts are not prefixes of the full conversation; labels fall back to finding the answers.
    assert prompt.endswith("[INST]Be brief.\n\nQuestion 1?[/INST]")
    training, _ = collators(model, processor)
    batch = training([sample(["red", "blue"], system="Be brief.")])
    assert supervised_text(processor, batch, 0) == "red</s>blue</s>"


# --- PaliGemma prefix/suffix -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["paligemma", "paligemma2"])
def test_paligemma_prefix_suffix_layout(built, name):
    _, model, processor = built(name)
    training, generation = collators(model, processor)
    tokenizer = processor.tokenizer
    batch = training([sample(["yes"], seed=1), sample(["The answer is 7"], seed=2)])
    row = batch["input_ids"][0]
    length = int(batch["attention_mask"][0].sum())
    image_id = model.config.image_token_id
    assert row[:16].tolist() == [image_id] * 16
    assert int(row[16]) == tokenizer.bos_token_id
    prefix_end = int((batch["token_type_ids"][0] == 1).nonzero()[0])
    assert tokenizer.decode(row[17:prefix_end]) == "Question 0?\n"
    assert tokenizer.decode(row[prefix_end:length]) == "yes<eos>"
    assert supervised_text(processor, batch, 0) == "yes<eos>"
    assert supervised_text(processor, batch, 1) == "The answer is 7<eos>"
    labels = batch["labels"]
    assert (labels[0, :prefix_end] == IGNORE_INDEX).all()
    assert (labels[0, length:] == IGNORE_INDEX).all()

    prompts = generation([sample(["yes"], seed=1), sample(["The answer is 7"], seed=2)])
    assert "labels" not in prompts
    assert (prompts["token_type_ids"] == 0).all()
    for row in range(2):
        real = prompts["input_ids"][row][prompts["attention_mask"][row] == 1]
        assert real[:16].tolist() == [image_id] * 16
        assert int(real[16]) == tokenizer.bos_token_id
        assert tokenizer.decode(real[17:]) == "Question 0?\n"


@pytest.mark.parametrize(
    ("messages", "turns"),
    [
        (sample(["red", "blue"]).messages, "['user', 'assistant', 'user', 'assistant']"),
        (sample(["red"], system="Be brief.").messages, "['system', 'user', 'assistant']"),
    ],
    ids=["multi_turn", "system"],
)
def test_paligemma_rejects_other_turn_layouts(built, messages, turns):
    _, model, processor = built("paligemma")
    training, _ = collators(model, processor)
    bad = Sample(messages=messages, images=sample(["x"]).images, source="data.jsonl:7")
    with pytest.raises(DataError, match=r"data\.jsonl:7: .*one prompt and one answer") as error:
        training([bad])
    assert turns in str(error.value)
    # The validation pass before training reports the same problem for this sample and passes the other.
    settings = check_settings(training, DataConfig(), model.config)
    assert check_sample(sample(["ok"]), settings).kind is None
    result = check_sample(bad, settings)
    assert result.kind is not None
    assert result.message.startswith("data.jsonl:7: ")
    assert "one prompt and one answer" in result.message


def test_paligemma_generation_new_tokens_only(built):
    _, model, processor = built("paligemma")
    _, generation = build_collators(processor, model.config, model.generation_config, max_length=256)
    samples = [sample(["yes"], seed=1), sample(["no"], seed=2)]
    prompts = generation(samples)
    with torch.no_grad():
        output = model.generate(**prompts, max_new_tokens=3, do_sample=False)
    new_tokens = output[:, prompts["input_ids"].shape[1] :]
    expected = [answer.strip() for answer in processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    answers = generate_answers(model, processor, samples, batch_size=2, max_new_tokens=3)
    assert answers == expected
    assert not any("Question" in answer for answer in answers)


# --- Saved processors keep their templates ------------------------------------------------------


def test_chat_templates_survive_reload(built):
    assert built("gemma3")[2].chat_template == gemma3_fixture.CHAT_TEMPLATE
    assert built("idefics3")[2].chat_template == idefics3_fixture.CHAT_TEMPLATE


def test_paligemma_rejects_text_only_sample(built):
    _, model, processor = built("paligemma")
    training, _ = collators(model, processor)
    with pytest.raises(DataError, match=r"text-only: the sample has no image"):
        training([text_only_sample()])
