"""Batch rendering: many clips from their prompts files, here or on a Ray cluster.

    sam2-matting batch shots.jsonl                 # the local runner
    sam2-matting batch shots.jsonl --ray auto      # the Ray runner

Modules: :mod:`~sam2_matting.batch.manifest` (the JSON-lines manifest, checked line by line),
:mod:`~sam2_matting.batch.clip` (one clip: its completeness record, its render with the code of
``matte --prompts``), :mod:`~sam2_matting.batch.runner_local` (one process, the model loaded
once), :mod:`~sam2_matting.batch.runner_ray` (one task per clip on worker actors, each holding
the model) and :mod:`~sam2_matting.batch.report` (progress lines, summary table, exit status).
The format and its guarantees are in docs/batch.md.
"""
