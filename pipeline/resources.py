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


def create_project(directory: Path) -> None:
    """A working starter project (the bundled sample) in `directory`; SphereError if it
    already holds one."""
    import shutil

    from pipeline.errors import SphereError
    if (directory / "campaigns.yaml").exists() or (directory / "content_sources.yaml").exists():
        raise SphereError(f"{directory} already holds a Sphere project (campaigns.yaml or "
                          "content_sources.yaml exists); choose an empty folder")
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("content_sources.yaml", "campaigns.yaml"):
        shutil.copyfile(bundled(name), directory / name)
    for name in ("audiences", "samples"):
        shutil.copytree(bundled(name), directory / name, dirs_exist_ok=True)
    (directory / "templates").mkdir(exist_ok=True)
    (directory / "templates" / "README.txt").write_text(
        "Put a file here with the same name as a built-in template (for example\n"
        "newsletter.mjml or partials/footer.mjml) to override it. `sphere templates` lists\n"
        "the built-in ones.\n", encoding="utf-8")
