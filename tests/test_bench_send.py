"""bench/send.py reports each `sphere send` process's own peak memory, not the
benchmark's: on Linux a child's ru_maxrss starts from its parent's high-water mark
(kept across fork and exec), so the SMTP runs, started after the smtplib loop had read
every message, reported ~540 MB that `sphere` never held (issue 18)."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.send import sphere

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux's VmHWM")
def test_peak_is_the_sphere_process_own_not_the_benchmarks(tmp_path: Path) -> None:
    held = b"x" * (200 << 20)  # written, so resident: the benchmark's messages
    _, peak, out = sphere(ROOT, tmp_path, "send", "--help")
    assert "Usage" in out
    assert len(held) == 200 << 20
    # `sphere --help` is a few tens of MB; the parent's 200 MB must not show.
    assert 0 < peak < 150, f"peak {peak} MB: the parent's memory counted as the child's"
