"""Evaluation: VLM probe accuracy (knowledge retention), and later rollouts and latency."""
