"""Reading the project's small JSON files (configs, manifests) with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_object(path: Path, error: type[Exception]) -> dict[str, Any]:
    """The JSON object in ``path``; ``error`` naming the file if it cannot be read or parsed,
    or holds something other than an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise error(f"cannot read {path}: {err}") from None
    if not isinstance(data, dict):
        raise error(f"{path} is not a JSON object")
    return data
