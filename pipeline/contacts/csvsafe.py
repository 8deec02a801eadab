"""CSV files Sphere writes (audiences/*.csv): cells a spreadsheet would run as a formula
are neutralised, the file is replaced atomically keeping its mode, and the temp files of
an interrupted run are removed by the next one."""
from __future__ import annotations

import csv
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

# OWASP's CSV injection list: a cell starting with one of these is a formula (or DDE
# command) in Excel, LibreOffice or Google Sheets. A line feed is added: some
# spreadsheets skip leading line breaks the way they skip the carriage return.
FORMULA_START = frozenset("=+-@\t\r\n")
# A lone sign or a plain signed number ("-", "+1", "-12.50") is read as text or a number,
# never as a formula, so it is written as it is; quoting it would only show an
# apostrophe. A phone number "+1 555 0100" is quoted: Excel reads it as a formula
# ("=+1 555 0100" -> #NULL!) and a save from Excel would lose the number.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)?\Z")
GUARD = "'"
_NOTEWORTHY = FORMULA_START | {GUARD}  # first characters worth a closer look
# A temp file is ".NAME.PID.RANDOM.tmp": the next run can tell whether its writer lives.
_TEMP_RE = re.compile(r"^\.(?P<name>.+\.csv)\.(?:(?P<pid>\d+)\.)?[^.]+\.tmp$")


def _formula_like(value: str) -> bool:
    bare = value.lstrip(GUARD)
    return bare[:1] in FORMULA_START and not _PLAIN_NUMBER.match(bare)


def guard(value: str) -> str:
    """The cell as written: a formula-like value gets a leading apostrophe (OWASP)."""
    # A value that already starts with apostrophes before a formula character gets one
    # more, so `unguard` gives back exactly what was written: the round trip is lossless.
    if not value or value[0] not in _NOTEWORTHY:  # nearly every cell: one set lookup
        return value
    return GUARD + value if _formula_like(value) else value


def unguard(value: str) -> str:
    """The cell as Sphere reads it: the apostrophe `guard` added, removed."""
    if value.startswith(GUARD) and _formula_like(value[1:]):
        return value[1:]
    return value


def _new_file_mode() -> int:
    """The mode open() would give a new file: 0666 less the process umask."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read it the only other way there is
    os.umask(mask)
    return 0o666 & ~mask


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete the hidden temp files of CSV writes whose process is gone; the ones removed."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for path in directory.iterdir():
        m = _TEMP_RE.match(path.name)
        if not m or not path.is_file():
            continue
        pid = int(m.group("pid") or 0)
        if pid and _alive(pid):
            continue  # another import is writing it right now
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class AtomicCsv:
    """A CSV written to a hidden temp file beside `path` and renamed over it on `commit`.

    The temp file is 0600 while it holds contact data; the committed file keeps the mode
    of the one it replaces (a new one gets the umask's). Every cell goes through `guard`.
    Leaving the `with` block without `commit` (an error, a dry run) removes the temp file;
    a killed process leaves it for `remove_stale_temps`."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        self.header = header
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                   dir=path.parent)  # mkstemp: mode 0600
        self.tmp = Path(tmp)
        self._handle = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle, lineterminator="\n")
        self._writer.writerow([guard(h) for h in header])
        self.rows = 0

    def write(self, row: Mapping[str, str]) -> None:
        """Append one row (columns not in the header are left out)."""
        self._writer.writerow([guard(row.get(k) or "") for k in self.header])
        self.rows += 1

    def commit(self) -> None:
        """fsync, give the file its mode, rename it over `path`, fsync the directory."""
        # A crash leaves the old file or the new one, never half of one.
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except FileNotFoundError:
            mode = _new_file_mode()
        os.chmod(self.tmp, mode)
        os.replace(self.tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must reach the disk too
        finally:
            os.close(dir_fd)

    def discard(self) -> None:
        """Remove the temp file (nothing is replaced)."""
        if not self._handle.closed:
            self._handle.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.discard()  # after commit the temp name no longer exists: a no-op
