"""Ablation sweeps: Optuna studies over strategies and config values, MLflow parent/child runs, reports."""
