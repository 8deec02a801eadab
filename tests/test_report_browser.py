"""The HTML report opened in headless Chromium at desktop width: no overflow, charts drawn."""
from __future__ import annotations

import html
import json
import os
from pathlib import Path

import pytest

from pipeline.delivery.report import render_html, report_from_store
from pipeline.state.store import Store
from tests.browser import _run, chromium, measure, screenshot
from tests.conftest import NOW
from tests.test_report import record

ARTIFACTS = Path(__file__).parent / "artifacts"
DESKTOP = 1280

if chromium() is None:
    if os.environ.get("CI"):
        raise RuntimeError("chromium is missing; .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium not installed (apt-get install chromium)", allow_module_level=True)

# Reports each chart's drawn size and bar count into the DOM, for --dump-dom to read.
SVG_PROBE = """<script>
document.body.setAttribute('data-charts', JSON.stringify(
  Array.from(document.querySelectorAll('svg.chart')).map(function (svg) {
    var r = svg.getBoundingClientRect();
    return [Math.round(r.width), Math.round(r.height), svg.querySelectorAll('rect.bar').length];
  })));
</script>"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the recorded event stream, written as a page."""
    folder = tmp_path_factory.mktemp("report")
    store = Store.open(folder / "sphere.db")
    record(store)
    target = folder / "report.html"
    target.write_text(render_html(report_from_store(store), NOW), encoding="utf-8")
    store.close()
    return target


def test_report_page_fits_a_desktop(page: Path) -> None:
    figures = measure(page, DESKTOP)
    assert figures["innerWidth"] == DESKTOP
    assert figures["scrollWidth"] <= DESKTOP, f"horizontal overflow: {figures['wide']}"
    assert not figures["wide"], f"elements wider than the screen: {figures['wide']}"
    assert figures["classes"].split().count("campaign") == 2
    shot = screenshot(page, DESKTOP, ARTIFACTS / "report.png", 1800)
    assert shot.stat().st_size > 10_000


def test_report_charts_are_drawn(page: Path) -> None:
    probe = page.with_name("report.probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", SVG_PROBE + "</body>"),
                     encoding="utf-8")
    try:
        dom = _run([f"--window-size={DESKTOP},900", "--dump-dom", probe.as_uri()])
    finally:
        probe.unlink()
    start = dom.index('data-charts="') + len('data-charts="')
    charts = json.loads(html.unescape(dom[start:dom.index('"', start)]))
    # market-alert (one send) sorts before monthly-sphere (four): four bars per send.
    assert [bars for _, _, bars in charts] == [4, 16]
    for width, height, _ in charts:
        assert width > 600 and height > 150, f"chart drawn at {width}x{height}"
