"""Hydra configs of `sam2-matting train`: train.yaml and the groups model/, adapter/,
data/ and optim/ (see sam2_matting.training.config)."""
