"""Training: transformers Trainer setup, step logging and the end-to-end recipe."""
