"""Preview emails and the gallery opened in headless Chromium at phone and desktop widths."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser import chromium, measure, screenshot

ARTIFACTS = Path(__file__).parent / "artifacts"
WIDTHS = (375, 600)
SECTIONS = ("section-header", "section-intro", "section-neighbourhood", "section-market",
            "section-interests", "section-tip", "section-signature", "section-footer")

if chromium() is None:
    if os.environ.get("CI"):
        raise RuntimeError("chromium is missing; .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def previews(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Preview the sample's newsletter for three contacts of different shapes."""
    from click.testing import CliRunner

    from pipeline.cli.main import main
    from tests.conftest import NOW, copy_sample
    project = copy_sample(tmp_path_factory.mktemp("browser") / "project")
    out = project / "preview"
    os.environ["SPHERE_NOW"] = NOW.isoformat()
    try:
        result = CliRunner().invoke(main, ["preview", "monthly-sphere", "--project",
                                           str(project), "--out", str(out)])
    finally:
        del os.environ["SPHERE_NOW"]
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("who", ["zoe.hartmann_example.com", "jose.alvarez_example.net",
                                 "linda.okafor_example.com"])
def test_email_layout(previews: Path, who: str, width: int) -> None:
    page = previews / f"{who}.html"
    figures = measure(page, width)
    assert figures["innerWidth"] == width
    assert figures["scrollWidth"] <= width, f"horizontal overflow: {figures['wide']}"
    assert not figures["wide"], f"elements wider than the screen: {figures['wide']}"
    expected = [s for s in SECTIONS if s != "section-interests" or "linda" not in who]
    missing = [s for s in expected if s not in figures["classes"]]
    assert not missing, f"sections missing at {width}px: {missing}"
    shot = screenshot(page, width, ARTIFACTS / f"{who}-{width}.png")
    assert shot.stat().st_size > 10_000  # a real picture, not a blank page


def test_gallery_opens(previews: Path) -> None:
    figures = measure(previews / "index.html", 1000)
    assert figures["scrollWidth"] <= 1000
    screenshot(previews / "index.html", 1000, ARTIFACTS / "preview-index.png", 1400)


def test_dark_mode_darkens_the_whole_email(previews: Path) -> None:
    page = previews / "zoe.hartmann_example.com.html"
    light, dark = measure(page, 600), measure(page, 600, dark=True)
    assert light["paper"] == "rgb(255, 255, 255)"
    assert dark["paper"] == "rgb(30, 30, 30)"  # every white section, not only the cards
    assert dark["body"] == "rgb(18, 18, 18)"
