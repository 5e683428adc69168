"""Saving fine-tuned models so that plain transformers (and peft, for adapters) load them."""
