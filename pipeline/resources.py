"""Where the built-in templates and the sample project are, installed or from source."""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled(name: str) -> Path:
    """Path of a bundled file or folder (templates, samples, campaigns.yaml, ...).

    A wheel carries them in pipeline/_bundled/; a source checkout or editable install
    reads them from the repository root, where the design card puts them.
    """
    inside = _PACKAGE / "_bundled" / name
    if inside.exists():
        return inside
    return _PACKAGE.parent / name
