"""Rows of a CSV export by column name: a byte-order mark, CRLF line ends and quoted
line breaks are fine; header names match case-insensitively."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from ..errors import BadImport
from . import fields


def rows(data: bytes, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, row)`` for each data row, keys lower-cased; ``line`` is where the row
    starts in the file. Raises :class:`BadImport` when a ``required`` column is missing
    or the CSV is malformed."""
    reader = csv.reader(io.StringIO(fields.decode(data), newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise BadImport("the CSV file is empty")
        names = [name.strip().lower() for name in header]
        missing = [column for column in required if column.lower() not in names]
        if missing:
            raise BadImport(f"the CSV header has no {', '.join(missing)} column (found: {', '.join(header)[:200]})")
        line = reader.line_num + 1
        for values in reader:
            if any(value.strip() for value in values):
                yield line, dict(zip(names, values, strict=False))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise BadImport(f"line {reader.line_num}: malformed CSV ({exc})") from exc
