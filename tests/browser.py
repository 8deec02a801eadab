"""Headless Chromium for layout tests: measure a page and take screenshots, offline."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

# Every host name fails to resolve: an email's remote images must not reach the network.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--virtual-time-budget=3000"]

MEASURE = """
<script>
(function () {
  var doc = document.documentElement;
  var wide = [];
  document.querySelectorAll('body *').forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > window.innerWidth + 1) { wide.push(el.tagName + '.' + el.className); }
  });
  var result = {
    innerWidth: window.innerWidth,
    scrollWidth: doc.scrollWidth,
    wide: wide.slice(0, 5),
    classes: Array.from(document.querySelectorAll('[class]')).map(function (e) { return e.className; }).join(' '),
    paper: (function () {
      var p = document.querySelector('.paper');
      return p ? getComputedStyle(p).backgroundColor : '';
    })(),
    body: getComputedStyle(document.body).backgroundColor
  };
  parent.postMessage(JSON.stringify(result), '*');
})();
</script>
"""

# Headless Chromium will not make a window narrower than 500 px, so the page is shown in
# an iframe of the exact width: its media queries and layout follow the iframe.
HARNESS = """<!doctype html><html><body style="margin:0">
<iframe src="{src}" style="width:{width}px;height:{height}px;border:0;display:block"></iframe>
<pre id="sphere-measure"></pre>
<script>
window.addEventListener('message', function (e) {{
  document.getElementById('sphere-measure').textContent = e.data;
}});
</script></body></html>
"""


def chromium() -> str | None:
    """Path of a Chromium binary, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


DARK = ["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]


def _run(args: list[str], timeout: float = 60) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([chromium() or "chromium", *FLAGS, f"--user-data-dir={profile}",
                               *args], capture_output=True, text=True, timeout=timeout, check=False,
                              env={**os.environ, "HOME": profile})
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-800:]}")
    return done.stdout


def _harness(html_file: Path, width: int, height: int, src: Path) -> Path:
    page = html_file.with_name(f"{html_file.stem}.harness{width}.html")
    page.write_text(HARNESS.format(src=src.name, width=width, height=height), encoding="utf-8")
    return page


def measure(html_file: Path, width: int, dark: bool = False) -> dict:
    """Open a copy of the page with a measuring script at `width` px (in dark mode if
    asked); return its figures."""
    probe = html_file.with_name(html_file.stem + f".probe{width}.html")
    text = html_file.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    page = _harness(html_file, width, 900, probe)
    try:
        dom = _run([*(DARK if dark else []), f"--window-size={max(width, 500)},900",
                    "--dump-dom", page.as_uri()])
    finally:
        probe.unlink()
        page.unlink()
    start = dom.index('<pre id="sphere-measure">') + len('<pre id="sphere-measure">')
    raw = dom[start:dom.index("</pre>", start)]
    return json.loads(raw.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
                      .replace("&quot;", '"'))


def screenshot(html_file: Path, width: int, out: Path, height: int = 2400) -> Path:
    """A PNG of the page at `width` px."""
    out.parent.mkdir(parents=True, exist_ok=True)
    page = _harness(html_file, width, height, html_file)
    try:
        _run([f"--window-size={width},{height}", f"--screenshot={out}", page.as_uri()])
    finally:
        page.unlink()
    return out
