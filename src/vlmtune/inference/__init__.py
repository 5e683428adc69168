"""Inference with a trained model or adapter: batch prediction and terminal chat."""
