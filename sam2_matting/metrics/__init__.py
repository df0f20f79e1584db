"""Matting evaluation (``sam2-matting evaluate``); see docs/training.md and
docs/matting-evaluation.md.

Modules: ``alpha`` (per-frame MAD, MSE, SAD, Grad, Conn, dtSSD and the course variants),
``protocols`` (standard = RVM's, course = the course project's, seeded), ``evalsets`` (RVM
composites, VideoMatte240K composited per the course protocol, synthetic clips), ``runner``
(predictors over clips) and ``report`` (JSON, Markdown, PNG plots).
"""
