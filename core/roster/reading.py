"""Reading a roster file row by row: never the whole file in memory.

The bytes are decoded line by line so a file that is not UTF-8 is refused with the line
where it goes wrong. A UTF-8 byte-order mark and Windows line endings are accepted, and
so are semicolon- or tab-separated files (what some spreadsheets export).
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.errors import InvalidInput
from core.money import DECIMAL_POINT, MoneyNotation, file_notation
from core.roster.formats import FileFormat, RecognisedHeader, recognise_header

RosterSource = str | Path | bytes | BinaryIO

_BOM = b"\xef\xbb\xbf"
_DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
_SPOOL_IN_MEMORY = 8 * 1024 * 1024


class RosterFileError(InvalidInput):
    """The file as a whole cannot be read (not UTF-8, no header, broken CSV quoting)."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class CsvRow:
    """One data row: its first line number in the file and its cells by column name.

    ``problem`` says why the cells cannot be trusted: the row has more or fewer fields than
    the header, so a value may sit under the wrong column. Such a row must not be imported.
    """

    line: int
    values: dict[str, str]
    problem: str | None = None


@contextmanager
def open_source(source: RosterSource) -> Iterator[BinaryIO]:
    """A binary stream over ``source``: a path, the file's bytes, or an open binary file."""
    if isinstance(source, (str, Path)):
        try:
            handle = open(source, "rb")  # noqa: SIM115 - closed by the with below, once open
        except FileNotFoundError:
            raise InvalidInput(f"No such file: {source}") from None
        except IsADirectoryError:
            raise InvalidInput(f"{source} is a folder, not a CSV file") from None
        with handle:
            yield handle
    elif isinstance(source, (bytes, bytearray)):
        yield io.BytesIO(source)
    elif source.seekable():
        source.seek(0)
        yield source
    else:
        # A file with amounts is read twice (``rows`` after ``amount_notation``): keep a copy.
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as copy:
            shutil.copyfileobj(source, copy)
            copy.seek(0)
            yield copy  # type: ignore[misc]


def source_name(source: RosterSource) -> str:
    """A name for the file in messages and the audit log."""
    if isinstance(source, (str, Path)):
        return Path(source).name
    return str(getattr(source, "name", "") or "uploaded file")


class RosterReader:
    """Iterates the rows of a roster file after recognising its header.

    Construct it, read ``header`` (which raises ``RosterFileError`` for an empty file or a
    header that matches no kind), then iterate ``rows()``; iteration raises
    ``RosterFileError`` when a later line is not UTF-8 or breaks the CSV quoting.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._lines = _decoded_lines(stream)
        self._reader: Iterator[list[str]] | None = None
        # csv counts the lines it has read from the header on; this turns that into file lines.
        self._line_offset = 0
        self._header_width = 0
        self._delimiter = ","
        self.header = self._read_header()

    @property
    def format(self) -> FileFormat:
        return self.header.format

    @property
    def comma_separated(self) -> bool:
        return self._delimiter == ","

    def _read_header(self) -> RecognisedHeader:
        for number, text in self._lines:
            if not text.strip():
                continue
            delimiter = max(_DELIMITERS, key=text.count) if any(d in text for d in _DELIMITERS) else ","
            lines = _chain_first(text, (line for _, line in self._lines))
            self._reader = csv.reader(lines, delimiter=delimiter, strict=True)
            self._delimiter = delimiter
            self._line_offset = number - 1
            try:
                cells = next(self._reader)
            except csv.Error as exc:
                raise RosterFileError(f"the header is not valid CSV: {exc}", line=number) from None
            self._header_width = len(cells)
            try:
                return recognise_header(cells)
            except InvalidInput as exc:
                raise RosterFileError(str(exc), line=number) from None
        raise RosterFileError(
            "The file is empty: it needs a header row naming its columns, then one row per record."
        )

    def rows(self) -> Iterator[CsvRow]:
        """Data rows, skipping blank lines; cells are stripped of surrounding spaces.

        A row whose number of fields differs from the header's comes with a ``problem``.
        """
        reader = self._reader
        assert reader is not None
        positions = self.header.positions
        previous_end = reader.line_num  # type: ignore[attr-defined]
        while True:
            line = self._line_offset + previous_end + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise RosterFileError(f"not valid CSV: {exc}", line=line) from None
            previous_end = reader.line_num  # type: ignore[attr-defined]
            if not any(cell.strip() for cell in cells):
                continue
            yield CsvRow(
                line,
                {name: cells[i].strip() if i < len(cells) else "" for name, i in positions.items()},
                None if len(cells) == self._header_width else self._width_problem(len(cells)),
            )

    def _width_problem(self, fields: int) -> str:
        separator = _DELIMITER_NAMES[self._delimiter]
        return (
            f"the row has {fields} fields but the header has {self._header_width}; check it for a "
            f"missing or extra {separator} (a value that contains a {separator} needs quotes)"
        )


def amount_notation(stream: BinaryIO) -> MoneyNotation:
    """How the file in ``stream`` writes its amounts, read from all of them (a first pass).

    Each amount is parsed in the file's notation, which is decided by the whole file
    (``core.money.file_notation``), so the file is read once before its rows are checked. The
    stream is left at its start. A file without an amount column has a decimal point.
    """
    stream.seek(0)
    try:
        reader = RosterReader(stream)
        if "amount" not in reader.format.columns:
            return DECIMAL_POINT
        amounts = ((row.line, row.values["amount"]) for row in reader.rows() if row.problem is None)
        return file_notation(comma_separated=reader.comma_separated, amounts=_until_unreadable(amounts))
    except RosterFileError:  # the pass that checks the rows reports it
        return DECIMAL_POINT
    finally:
        stream.seek(0)


def _until_unreadable(amounts: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """The amounts up to a line that cannot be read (the rows' own pass reports that line)."""
    try:
        yield from amounts
    except RosterFileError:
        return


def _decoded_lines(stream: BinaryIO) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(stream, start=1):
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM):]
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RosterFileError(
                f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} cannot be "
                "read). Save it from your spreadsheet as \"CSV UTF-8\" and try again.",
                line=number,
            ) from None


def _chain_first(first: str, rest: Iterable[str]) -> Iterator[str]:
    yield first
    yield from rest
