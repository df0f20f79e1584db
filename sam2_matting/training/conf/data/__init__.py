"""Hydra config group (YAML files only)."""
