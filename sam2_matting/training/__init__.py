"""Training LoRA matting adapters on SAM 2 (``sam2-matting train``); see docs/training.md.

Modules: ``config`` (Hydra groups in ``conf/``), ``layout`` (data sets on disk, checked),
``datasets``/``augment``/``synthetic`` (clips), ``prompts`` (seeded prompts from the true
alpha), ``step`` (the differentiable clip forward through SAM 2), ``losses``, ``trainer``
(with ``checkpoint``, ``distributed``, ``runlog``) and ``build`` (model and data from a config).

Named ``sam2_matting.training``, never a top-level ``training``: the sam2 wheel installs one.
The server never imports this package.
"""
