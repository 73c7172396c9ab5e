"""XLSX exports of the statistics (openpyxl), the same rows as the CSV of ``reports.csvfile``
for whoever would rather not import a CSV:

* numbers are numbers, times real spreadsheet times (``yyyy-mm-dd hh:mm:ss``, the bank's wall
  clock: a workbook has no time zones), an empty value an empty cell;
* every text cell is written as a string (``t="inlineStr"``), never as a formula or an error
  value, so a name beginning with ``=`` cannot run; one beginning with ``= + - @`` also gets
  Excel's quote prefix, so that editing the cell does not turn it into a formula. Unlike the
  CSV, the text is kept as it is: no apostrophe is added;
* a write-only workbook: each row goes to openpyxl's temporary file as it comes, never held as
  cell objects, and the finished file is read back in chunks;
* characters XML cannot carry (C0 controls other than tab, line feed and carriage return)
  become U+FFFD instead of failing the whole export, and a carriage return (alone or before a
  line feed) a line feed: a line break inside a cell, which XML would make of it anyway.
"""

from __future__ import annotations

import re
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import suppress
from datetime import datetime
from itertools import chain
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from reports.csvfile import FORMULA_STARTS, Cell

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
CHUNK = 64 * 1024
NOT_IN_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
TITLE_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")


def xlsx_chunks(
    header: Iterable[str], rows: Iterable[Iterable[Cell]], title: str
) -> Iterator[bytes]:
    """The workbook (one sheet named ``title``) in chunks; the rows are read as it is made."""
    workbook = Workbook(write_only=True)
    workbook.properties.creator = "Timebank"
    sheet: WriteOnlyWorksheet = workbook.create_sheet(TITLE_FORBIDDEN.sub("_", title)[:31])
    names = list(header)
    rows = iter(rows)
    first = [list(r) for r in _first(rows)]
    _widths(sheet, names, first[0] if first else [])
    sheet.freeze_panes = "A2"  # the header stays in sight while scrolling a long month
    bold = Font(bold=True)
    try:
        sheet.append([_cell(sheet, name, bold) for name in names])
        for row in chain(first, rows):
            sheet.append([_cell(sheet, value) for value in row])
    except BaseException:
        _discard(sheet)
        raise
    with tempfile.TemporaryFile() as out:
        workbook.save(out)
        out.seek(0)
        while chunk := out.read(CHUNK):
            yield chunk


def xlsx_bytes(header: Iterable[str], rows: Iterable[Iterable[Cell]], title: str) -> bytes:
    return b"".join(xlsx_chunks(header, rows, title))


def _discard(sheet: WriteOnlyWorksheet) -> None:
    """openpyxl removes the rows' temporary file when it saves, or when the process exits: an
    export that fails half-way (the database gone) must not leave it behind in a server."""
    with suppress(Exception):
        sheet.close()  # ends openpyxl's row writer, which would otherwise end at a random GC
    writer = getattr(sheet, "_writer", None)
    if writer is not None:
        with suppress(OSError, ValueError):
            writer.cleanup()


def _first(rows: Iterator[Iterable[Cell]]) -> list[Iterable[Cell]]:
    return [row for row in (next(rows, None),) if row is not None]


def _cell(sheet: WriteOnlyWorksheet, value: Cell, font: Font | None = None) -> Any:
    """One cell: a string stays a string whatever it begins with (see the module's doc)."""
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, datetime):
        cell = WriteOnlyCell(sheet, value.replace(tzinfo=None))
        cell.number_format = TIME_FORMAT
        return cell
    text = NOT_IN_XML.sub("\ufffd", value).replace("\r\n", "\n").replace("\r", "\n")
    cell = WriteOnlyCell(sheet, text)
    cell.data_type = "s"  # openpyxl would take "=…" for a formula and "#N/A" for an error
    if text.startswith(FORMULA_STARTS):
        cell.quotePrefix = True
    if font is not None:
        cell.font = font
    return cell


def _widths(sheet: WriteOnlyWorksheet, header: list[str], first: list[Cell]) -> None:
    """Columns wide enough for the header and the first row (a time too narrow shows ####)."""
    columns = sheet.column_dimensions  # type: ignore[attr-defined]  # write-only sheets have them
    for index, name in enumerate(header, 1):
        sample = first[index - 1] if index - 1 < len(first) else None
        width = max(_display_width(name), _display_width(_shown(sample)), 8)
        columns[get_column_letter(index)].width = min(width + 2, 60)


def _shown(value: Cell) -> str:
    if isinstance(value, datetime):
        return "2026-01-01 00:00:00"
    return "" if value is None else str(value)


def _display_width(text: str) -> int:
    """Characters as a spreadsheet lays them out: a Chinese character takes two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
