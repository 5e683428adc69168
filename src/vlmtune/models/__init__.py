"""Model loading, component discovery (vision encoder, projector, language model) and fine-tuning setup."""
