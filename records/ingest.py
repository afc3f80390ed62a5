"""Ingestion: department exports (CSV, Excel, Parquet) → validated canonical rows in the store.

Every input row either lands in the store or lands in the quarantine with a specific reason; a
file-level problem (unreadable file, missing columns) raises `IngestError` and writes nothing.
Re-ingesting a file changes no data (idempotent by record_id and content). A batch is atomic
(`records.store.Store.begin`).

Late delivery: the store's `recorded_date` is the day a record became known here (every as-of
question reads it), so a row whose file says it was recorded before the day of ingestion (less
`grace_days`) is stored as recorded on the day of ingestion, with the file's date kept in
`source_recorded_date`. A file that back-fills history (`history=True`: a department's past
records loaded once, the simulator, the real data sets) keeps its recorded dates. Of an entity's
versions known by a day, the newest by the department's date is in force
(`records.schema.version_order`), so a version that arrives late never displaces a newer one.

The work is set-based: the file is read into Arrow (all columns as text), the mapping is compiled
to one DuckDB SELECT, codes are checked with numpy over their bytes, and the checks, conflict
detection and the partitioned Parquet write run in DuckDB. Python touches only rejected rows.

A file is read and prepared (trimmed, codes checked) `ROWS_AT_ONCE` rows at a time. A file of
more rows is spooled, so prepared, to Parquet in the batch's staging directory, and DuckDB works
from there within its memory limit (spilling to its temporary directory): the memory an ingestion
takes does not grow with the file. Reading happens inside the batch, so a failure at any part
leaves the store as it was.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import itertools
import json
import mmap
import re
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from records import uscc
from records.catalogue import Catalogue, default_catalogue
from records.clock import CHINA, CHINA_STANDARD_TIME, china_today
from records.mapping import FieldSpec, Mapping, MappingError, identity_mapping, load_mapping
from records.publicity import CORRECTABLE
from records.schema import (
    ENTITY_COLUMNS,
    ENTITY_REQUIRED,
    ENTITY_STATUSES,
    ENTITY_TYPES,
    QUARANTINE,
    RECORD_COLUMNS,
    RECORD_REQUIRED,
    version_order,
)
from records.store import Store

REASONS = {
    "malformed_row": "the line does not split into the header's columns (e.g. a quote never closed)",
    "formula_without_value": "an Excel formula whose computed value was never saved",
    "empty_row": "no values to ingest in the row",
    "missing_field": "a required field is empty",
    "invalid_uscc": "not a valid unified social credit code",
    "unknown_category": "category not in the catalogue",
    "invalid_date": "a date that cannot be parsed or is implausible",
    "future_date": "a date after the day of ingestion",
    "recorded_before_event": "recorded_date before event_date",
    "severity_not_allowed": "severity not allowed for the category",
    "missing_severity": "the category requires a severity",
    "invalid_amount": "amount is not a finite number",
    "negative_amount": "amount is negative",
    "amount_not_applicable": "the category has no amount",
    "invalid_attributes": "attributes are not a JSON object",
    "missing_attribute": "an attribute the category requires is missing",
    "invalid_industry": "industry is not a GB/T 4754 code",
    "invalid_region": "region is not a 6-digit division code",
    "invalid_entity_type": "entity_type unknown or inconsistent with the code",
    "invalid_status": "status unknown",
    "duplicate_conflict": "the same key twice in the file with different content",
    "record_id_conflict": "record_id already stored with different content",
}
"""Quarantine reasons (stable machine codes) and what each means."""

EARLIEST_DATE = "1900-01-01"

MAX_GRACE_DAYS = 366
"""The most days a daily feed's recorded dates may lag and still be kept (`grace_days`)."""

CSV_BLOCK_BYTES = 1 << 22
"""pyarrow's CSV block size: 4 MiB read a 1.7 GB file in 1.7 s against 3.9 s with the 1 MiB
default (10 M simulated records, 2 cores)."""


class IngestError(Exception):
    """The file as a whole cannot be ingested; nothing was written."""


@dataclass
class IngestResult:
    batch_id: str
    kind: str
    source_file: str
    source_dept: str
    rows_read: int = 0
    rows_mapped: int = 0
    """Rows after mapping (an unpivot makes several of one); = stored + already_stored +
    duplicates_in_file + quarantined."""
    stored: int = 0
    already_stored: int = 0
    duplicates_in_file: int = 0
    quarantined: int = 0
    already_quarantined: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    history: bool = False
    """The file back-filled history: its recorded dates were kept whatever their age."""
    restamped: int = 0
    """Rows stored that arrived late: recorded on the day of ingestion, the file's date kept in
    `source_recorded_date`."""
    earliest_source_recorded: str | None = None
    """The earliest file date among the restamped rows (ISO), None when none was."""
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows_per_second"] = round(self.rows_per_second)
        return d


# ---- reading ----------------------------------------------------------------------------------


@dataclass
class UnreadRow:
    """An input row that never became a table row (quarantined with its reason as it is)."""

    row: int | None
    """Its data row in the file (1 = the first after the header), None if unknown."""
    reason: str
    message: str
    raw: str
    """The row as JSON text: {"line": text} for a line that does not split."""


def read_input(
    path: Path, encoding: str = "utf-8", sheet: str | None = None
) -> tuple[pa.Table, list[UnreadRow]]:
    """Read a CSV, Excel or Parquet file with every column as text, plus `_row` (1-based).

    `_row` is the data row in the file: for CSV the first record after the header is 1 and
    blank lines are not rows; for Excel it is the sheet row less the header's (blank rows count,
    so that row n is the one Excel shows as n + 1). Returns the table and the rows that could
    not be read (a line that does not split into the header's columns, a formula without a
    computed value). Blank header names become `_c<position>` (0-based), e.g. an unnamed index
    column `_c0`. The whole file in memory: ingestion reads it in parts (`read_chunks`).
    """
    unread: list[UnreadRow] = []
    tables: list[pa.Table] = []
    for chunk in read_chunks(path, encoding, sheet, unread):
        if chunk is None:  # read again from the start
            tables.clear()
        else:
            tables.append(chunk)
    table = pa.concat_tables(tables)
    if "_row" not in table.column_names:
        table = table.append_column("_row", pa.array(np.arange(1, table.num_rows + 1), pa.int64()))
    return table, unread


def read_chunks(
    path: Path, encoding: str = "utf-8", sheet: str | None = None,
    unread: list[UnreadRow] | None = None,
) -> Iterator[pa.Table | None]:  # fmt: skip
    """The rows of a CSV, Excel or Parquet file as consecutive tables (see `read_input`), at
    least one (a file of no rows gives its header as an empty table). A table without `_row`
    numbers its rows by position, counting on from the tables before it. `None` means: forget
    the tables given so far, the file is read again from its start (a CSV file the fast reader
    cannot be trusted with, read line by line); `unread` is then cleared too. Rows that cannot
    be read are appended to `unread`."""
    unread = [] if unread is None else unread
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".txt", ".tsv", ".xlsx", ".xlsm", ".parquet"):
        raise IngestError(f"{path.name}: unsupported file type {suffix!r} (csv, xlsx, parquet)")
    try:
        if suffix in (".csv", ".txt", ".tsv"):
            delimiter = "\t" if suffix == ".tsv" else ","
            names, has_data = _csv_header(path, encoding, delimiter)
            if not has_data:  # the header alone (pyarrow cannot skip a line without its newline)
                yield pa.table({n: pa.array([], pa.string()) for n in names})
                return
            try:
                yield from _csv_blocks(path, encoding, delimiter, names)
                return
            except _ReadByLines:
                pass
            unread.clear()
            yield None
            yield from _csv_lines(path, encoding, delimiter, names, unread)
        elif suffix in (".xlsx", ".xlsm"):
            yield _read_excel(path, sheet, unread)
        else:
            yield from _parquet_chunks(path)
    except UnicodeDecodeError as exc:
        raise IngestError(_decode_problem(path, encoding, str(exc))) from None
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        if isinstance(exc, IngestError):
            raise
        if isinstance(exc, pa.ArrowInvalid) and "UTF8" in str(exc):
            raise IngestError(_decode_problem(path, encoding, str(exc))) from None
        raise IngestError(f"{path.name}: cannot read file: {exc}") from exc


def _decode_problem(path: Path, encoding: str, detail: str) -> str:
    """A decoding failure, with the encoding that probably fits."""
    with open(path, "rb") as fh:
        start = fh.read(4)
    if start[:2] in (b"\xff\xfe", b"\xfe\xff"):
        hint = "it starts with a UTF-16 byte order mark: give --encoding utf-16"
    else:
        hint = (
            "Chinese exports are often GBK or GB18030: give --encoding gbk or --encoding gb18030 "
            "(or `encoding:` in the mapping)"
        )
    return f"{path.name}: not {encoding} text ({detail}); {hint}"


def _header_names(names: list[str]) -> list[str]:
    out: list[str] = []
    for i, name in enumerate(names):
        name = (name or "").strip().lstrip("\ufeff")
        name = name or f"_c{i}"
        while name in out:
            name = f"{name}_{i}"
        out.append(name)
    return out


def _csv_header(path: Path, encoding: str, delimiter: str) -> tuple[list[str], bool]:
    """The header's column names, and whether any data follows it."""
    with open(path, encoding=encoding, newline="") as fh:
        header = next(csv.reader(fh, delimiter=delimiter), None)
        has_data = bool(fh.read(1))
    if not header:
        raise IngestError(f"{path.name}: empty file (no header line)")
    return _header_names(header), has_data


class _ReadByLines(Exception):
    """The fast CSV reader met a row it cannot be trusted with: read the file line by line."""


def _csv_blocks(path: Path, encoding: str, delimiter: str, names: list[str]) -> Iterator[pa.Table]:
    """The CSV file's rows as pyarrow reads them, block by block; raises `_ReadByLines` when
    they cannot be trusted. A quote that is never closed makes pyarrow read the following lines
    as one value: the merged row is skipped (too few fields) or, when the quote opens the last
    column, taken as valid; a quote closed irregularly (`"a<newline>b"c`) is taken as valid too.
    Such files are read again line by line; a file whose values over several lines all stand in
    it as regularly quoted fields is read as pyarrow read it."""
    skipped: list[str] = []

    def on_invalid(row: Any) -> str:
        skipped.append(row.text)
        return "skip"

    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(
            encoding=encoding, column_names=names, skip_rows=1, block_size=CSV_BLOCK_BYTES
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter, invalid_row_handler=on_invalid, newlines_in_values=True
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=False
        ),
    )
    quoted = _QuotedLineBreaks(path, encoding, delimiter)
    given = False
    try:
        for batch in reader:
            if skipped:
                raise _ReadByLines
            table = pa.Table.from_batches([batch])
            if _has_line_breaks(table) and not quoted.follow(table):
                raise _ReadByLines
            given = True
            yield table
        if skipped:
            raise _ReadByLines
    finally:
        reader.close()
    if not given:  # the header and blank lines only
        yield pa.table({n: pa.array([], pa.string()) for n in names})


def _has_line_breaks(table: pa.Table) -> bool:
    """Whether any text value may hold a line break (a byte scan of the value buffers)."""
    for column in table.columns:
        for chunk in column.chunks:
            data = chunk.buffers()[2] if len(chunk.buffers()) > 2 else None
            if data is not None and data.size:
                values = np.frombuffer(data, np.uint8)
                if (values == 10).any() or (values == 13).any():
                    return True
    return False


class _QuotedLineBreaks:
    """Whether every value with a line break stands in the file, in table order, as a quoted
    field closed regularly: `"`, the value with its quotes doubled, `"`, between delimiters or
    line ends. That is how the line-by-line reader keeps it; a value merged from a quote never
    closed (no closing quote) or closed irregularly (`"a<newline>b"c`) is not found so.

    One search of the file's bytes from value to value, carried on from table to table (the
    tables of one file, in order); False (read line by line) for an encoding in which the
    delimiter, quote and line ends are not single ASCII bytes (UTF-16).
    """

    def __init__(self, path: Path, encoding: str, delimiter: str) -> None:
        codec = codecs.lookup(encoding).name
        self.codec = "utf-8" if codec == "utf-8-sig" else codec
        marks = delimiter + '"\r\n'
        self.ascii = marks.encode(self.codec, "replace") == marks.encode("ascii")
        self.path, self.delimiter, self.start = path, delimiter, 0

    def follow(self, table: pa.Table) -> bool:
        """Whether the values of `table` (the file's next rows) with a line break are found."""
        if not self.ascii:
            return False
        values: list[tuple[int, int, str]] = []
        for position, column in enumerate(table.columns):
            offset = 0
            for chunk in column.chunks:
                rows = _line_break_rows(chunk)
                texts = chunk.take(pa.array(rows, pa.int64())).to_pylist()
                values.extend(
                    (offset + int(r), position, t) for r, t in zip(rows, texts, strict=True)
                )
                offset += len(chunk)
        values.sort()
        delimiter = self.delimiter.encode()
        before, after = {delimiter, b"\r", b"\n"}, {delimiter, b"\r", b"\n", b""}
        with (
            open(self.path, "rb") as fh,
            mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data,
        ):
            for _row, _column, text in values:
                field = ('"' + text.replace('"', '""') + '"').encode(self.codec)
                at = data.find(field, self.start)
                end = at + len(field)
                if at <= 0 or data[at - 1 : at] not in before or data[end : end + 1] not in after:
                    return False
                self.start = end
        return True


def _line_break_rows(chunk: pa.Array) -> np.ndarray:
    """The positions of the text values of `chunk` that hold a line break: the bytes found in
    its data buffer, placed by its offsets (10 times as fast as matching every value)."""
    if not pa.types.is_string(chunk.type):
        chunk = chunk.cast(pa.string())
    buffers = chunk.buffers()
    if len(buffers) < 3 or buffers[2] is None or not len(chunk):
        return np.zeros(0, np.int64)
    offsets = np.frombuffer(buffers[1], np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
    data = np.frombuffer(buffers[2], np.uint8)[offsets[0] : offsets[-1]]
    breaks = np.flatnonzero((data == 10) | (data == 13)) + offsets[0]
    return np.unique(np.searchsorted(offsets, breaks, side="right") - 1).astype(np.int64)


class _Lines:
    """The physical lines of a text file for `csv.reader`, with lines given back to be read
    again; `taken` holds the lines of the record being read, `ended` whether it hit the end."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._back: list[str] = []
        self.taken: list[str] = []
        self.ended = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._back:
            line = self._back.pop()
        else:
            try:
                line = next(self._lines)
            except StopIteration:
                self.ended = True
                raise
        self.taken.append(line)
        return line

    def give_back(self, lines: list[str]) -> None:
        self._back.extend(reversed(lines))

    def start_record(self) -> None:
        self.taken = []
        self.ended = False


CSV_CHUNK_ROWS = 1 << 16


def _csv_lines(
    path: Path, encoding: str, delimiter: str, names: list[str], unread: list[UnreadRow]
) -> Iterator[pa.Table]:
    """Read a CSV record by record so that a broken line costs only itself.

    A record whose quoted value spans lines is kept when it closes regularly (a quote followed by
    the delimiter or the line end) with the header's number of fields. Otherwise (a quote never
    closed, closed irregularly, or the wrong number of fields) only its first line is
    quarantined as `malformed_row`, and reading resumes on the next line. A single line with an
    irregular quote (`"a"b`) is read as pyarrow reads it. Every physical line is thus in exactly
    one row, stored or quarantined.
    """
    width = len(names)
    columns: list[list[str]] = [[] for _ in names]
    row_numbers: list[int] = []

    def flush() -> pa.Table:
        table = pa.table({n: pa.array(c, pa.string()) for n, c in zip(names, columns, strict=True)})
        table = table.append_column("_row", pa.array(row_numbers, pa.int64()))
        for values in columns:
            values.clear()
        row_numbers.clear()
        return table

    def malformed(number: int, text: str) -> None:
        line = text.rstrip("\r\n")
        unread.append(
            UnreadRow(
                number, "malformed_row",
                f"row {number} does not split into the header's columns: {line[:120]!r}",
                json.dumps({"line": line}, ensure_ascii=False),
            )
        )  # fmt: skip

    with open(path, encoding=encoding, newline="") as fh:
        lines = _Lines(iter(fh))
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        next(reader, None)  # the header
        number = 0
        while True:
            lines.start_record()
            fields: list[str] | None
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error:  # a quote closed irregularly, never closed, or a huge field
                fields = None
            taken, ended = lines.taken, lines.ended
            if fields == []:  # a blank line: not a row
                continue
            number += 1
            if fields is None and len(taken) == 1 and not ended:
                fields = next(csv.reader([taken[0]], delimiter=delimiter), [])
            if fields is not None and len(fields) == width and not ended:
                for i, value in enumerate(fields):
                    columns[i].append(value)
                row_numbers.append(number)
                if len(row_numbers) == CSV_CHUNK_ROWS:
                    yield flush()
                continue
            if len(taken) > 1:  # the record ran over lines: only its first line is broken
                lines.give_back(taken[1:])
            if taken:
                malformed(number, taken[0])
    yield flush()


def _cell_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return (
            value.date().isoformat()
            if value.time() == datetime.min.time()
            else value.isoformat(sep=" ")
        )
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_excel(path: Path, sheet: str | None, unread: list[UnreadRow]) -> pa.Table:
    """The sheet's rows as text. A formula cell whose computed value was never saved (a
    workbook written by a program and not opened since) would read as empty: its row is
    quarantined as `formula_without_value` instead."""
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, EOFError, zlib.error) as exc:
        raise IngestError(
            f"{path.name}: not a readable Excel workbook ({type(exc).__name__}: {exc})"
        ) from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise IngestError(
                f"{path.name}: no sheet {sheet!r}; the workbook has: {', '.join(book.sheetnames)}"
            )
        ws = book[sheet] if sheet else book.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        if not header or all(h is None for h in header):
            raise IngestError(f"{path.name}: empty sheet (no header row)")
        names = _header_names([_cell_text(h) or "" for h in header])
        columns: list[list[str | None]] = [[] for _ in names]
        blank: list[bool] = []
        for row in rows:  # read-only sheets give blank rows too: the index is the position
            cells = list(row or ()) + [None] * (len(names) - len(row or ()))
            blank.append(all(v is None for v in cells[: len(names)]))
            for i in range(len(names)):
                columns[i].append(_cell_text(cells[i]))
    except (zipfile.BadZipFile, KeyError, EOFError, zlib.error) as exc:
        raise IngestError(
            f"{path.name}: not a readable Excel workbook ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        book.close()
    if _has_formulas(path):
        _quarantine_uncomputed_formulas(path, ws.title, names, columns, blank, unread)
    table = pa.table({n: pa.array(c, pa.string()) for n, c in zip(names, columns, strict=True)})
    table = table.append_column("_row", pa.array(np.arange(1, len(blank) + 1), pa.int64()))
    return table.filter(pa.array([not b for b in blank], pa.bool_()))


_FORMULA = re.compile(rb"<(?:\w+:)?f[ >/]")


def _has_formulas(path: Path) -> bool:
    """Whether any sheet of the workbook holds a formula (a scan of the sheets' XML)."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if not (name.startswith("xl/worksheets/") and name.endswith(".xml")):
                continue
            with archive.open(name) as part:
                tail = b""
                while block := part.read(1 << 20):
                    if _FORMULA.search(tail + block):
                        return True
                    tail = block[-16:]
    return False


def _quarantine_uncomputed_formulas(
    path: Path,
    title: str,
    names: list[str],
    columns: list[list[str | None]],
    blank: list[bool],
    unread: list[UnreadRow],
) -> None:
    """Mark as blank (removed) and quarantine the rows with a formula that has no saved value."""
    import openpyxl
    from openpyxl.utils import get_column_letter

    book = openpyxl.load_workbook(path, read_only=True, data_only=False)
    try:
        rows = book[title].iter_rows(min_row=2)
        for index, row in enumerate(rows):
            if index >= len(blank):
                break
            found = [
                (i, cell.value)
                for i, cell in enumerate(row[: len(names)])
                if getattr(cell, "data_type", None) == "f" and columns[i][index] is None
            ]
            if not found:
                continue
            i, formula = found[0]
            raw = {n: columns[k][index] for k, n in enumerate(names)}
            raw.update({names[k]: str(f) for k, f in found})
            unread.append(
                UnreadRow(
                    index + 1, "formula_without_value",
                    f"row {index + 1}: cell {get_column_letter(i + 1)}{index + 2} ({names[i]}) "
                    f"holds the formula {formula} without a computed value; open the workbook "
                    "in Excel or WPS and save it, so that its values are computed",
                    json.dumps(raw, ensure_ascii=False, separators=(",", ":")),
                )
            )  # fmt: skip
            blank[index] = True
    finally:
        book.close()


def _parquet_chunks(path: Path) -> Iterator[pa.Table]:
    """Typed columns stay typed here: the mapping's SQL reads every column as text. Read a row
    group at a time (its columns decoded in parallel), a large one in batches."""
    with pq.ParquetFile(path) as parquet:
        names = _header_names(parquet.schema_arrow.names)
        yield parquet.schema_arrow.empty_table().rename_columns(names)
        for group in range(parquet.num_row_groups):
            if parquet.metadata.row_group(group).num_rows <= PARQUET_BATCH_ROWS:
                yield parquet.read_row_group(group).rename_columns(names)
                continue
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=[group]):
                yield pa.Table.from_batches([batch]).rename_columns(names)


# ---- SQL compilation of a mapping ------------------------------------------------------------


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


SPACES = tuple(c for c in range(0x3001) if chr(c).isspace())
"""Every character Python counts as whitespace, as `uscc.compact` removes from codes: ASCII
blanks and the no-break (U+00A0), ideographic (U+3000) and other Unicode spaces that Chinese
spreadsheets carry. Values are trimmed of them, never NFKC-normalised (that could merge two
distinct record ids)."""

_SPACE_CHARS = "concat(" + ", ".join(f"chr({c})" for c in SPACES) + ")"


def _trimmed(x: str) -> str:
    """Text `x` without surrounding whitespace (any Unicode space).

    Trimming only values that start or end with whitespace is twice as fast as trimming all.
    """
    return f"CASE WHEN {_has_edge_space(x)} THEN trim({x}, {_SPACE_CHARS}) ELSE {x} END"


def _has_edge_space(x: str) -> str:
    """Whether text `x` starts or ends with whitespace that `_trimmed` removes (true for the
    empty text too). A search of its edge characters among the spaces: comparing their code
    points with each of the spaces made mapping a file three times as slow."""
    return f"(contains({_SPACE_CHARS}, left({x}, 1)) OR contains({_SPACE_CHARS}, right({x}, 1)))"


_SPACE_TEXT = "".join(chr(c) for c in SPACES)


def _trimmed_text(table: pa.Table) -> pa.Table:
    """The table with its text columns trimmed of every space (`SPACES`), before any SQL reads
    it: Arrow's `utf8_trim` took 0.35 s for 27 M values, where the same trim in DuckDB took 1.6 s
    (its `trim` with these characters, 13 s; `_text` trusts it and trims no more). The
    quarantine's copy of a rejected row shows it so trimmed."""
    for i, column in enumerate(table.columns):
        kind = column.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_string_view(kind)):  # fmt: skip
            continue
        text = column.cast(pa.large_string() if pa.types.is_large_string(kind) else pa.string())
        name = table.schema.field(i).name
        table = table.set_column(i, name, pc.utf8_trim(text, characters=_SPACE_TEXT))
    return table


def _text(col: str) -> str:
    """The column as text; empty → NULL. Text columns come trimmed (`_trimmed_text`); other
    types (numbers, dates) cast to text have no surrounding spaces."""
    return f"nullif(CAST({_ident(col)} AS VARCHAR), '')"


def _field_sql(spec: FieldSpec) -> str:
    if spec.column is not None:
        expr = _text(spec.column)
    elif spec.value is not None:
        expr = _lit(spec.value)
    elif spec.template is not None:
        parts = []
        for i, piece in enumerate(_split_template(spec.template)):
            if i % 2 == 0:
                if piece:
                    parts.append(_lit(piece))
            elif piece == "_row":
                parts.append("CAST(_row AS VARCHAR)")
            else:
                parts.append(_text(piece))
        expr = "(" + " || ".join(parts or ["''"]) + ")"
    elif spec.hash_of is not None:
        cols = ", ".join(f"coalesce({_text(c)}, chr(0))" for c in spec.hash_of)
        expr = f"({_lit(spec.prefix)} || md5(concat_ws(chr(31), {cols})))"
    elif spec.sql is not None:
        expr = f"nullif({_trimmed(f'CAST(({spec.sql}) AS VARCHAR)')}, '')"
    else:
        assert spec.derive_uscc is not None
        expr = _ident(f"__derived_{spec.derive_uscc}")
    if spec.map:
        cases = " ".join(f"WHEN {_lit(k)} THEN {_lit(v)}" for k, v in spec.map.items())
        expr = f"(CASE {expr} {cases} ELSE {expr} END)"
    return expr


def _split_template(template: str) -> list[str]:
    return re.split(r"{([^{}]+)}", template)


_OFFSET = (
    r"^(.*[0-9]:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?)"  # the local date-time, then the offset
    r"\s*([Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)$"
)
"""A date-time with a UTC offset: (local part, `Z` or ±hh[:mm]), e.g. 2024-01-04T16:30:00Z."""


def _date_sql(raw: str, formats: tuple[str, ...]) -> str:
    """The date in China of a text value parsed with the formats (the first that fits).

    A date-time with a UTC offset is moved to China Standard Time before its date is taken:
    2024-01-04T16:30:00Z is 5 January in Beijing (as `_china_local_timestamps` does for typed
    columns).
    """
    rx = _lit(_OFFSET)
    local = f"regexp_extract({raw}, {rx}, 1)"
    offset = f"replace(regexp_extract({raw}, {rx}, 2), ':', '')"
    minutes = (
        f"(CASE WHEN upper({offset}) = 'Z' THEN 0 ELSE "
        f"(CASE WHEN left({offset}, 1) = '-' THEN -1 ELSE 1 END) * "
        f"(CAST(substr({offset}, 2, 2) AS INTEGER) * 60 + "
        f"coalesce(TRY_CAST(nullif(substr({offset}, 4, 2), '') AS INTEGER), 0)) END)"
    )
    in_china = (
        f"({_parse_sql(local, formats)} - to_minutes({minutes}) + "
        f"to_minutes({CHINA_OFFSET_MINUTES}))"
    )
    return (
        f"CAST(CASE WHEN contains({raw}, ':') AND regexp_full_match({raw}, {rx}) THEN {in_china} "
        f"ELSE {_parse_sql(raw, formats)} END AS DATE)"
    )


CHINA_OFFSET_MINUTES = int(CHINA.utcoffset(None).total_seconds()) // 60
"""China Standard Time's offset from UTC in minutes (records.clock.CHINA)."""

_DIGITS = {"%Y": 4, "%m": 2, "%d": 2, "%H": 2, "%M": 2, "%S": 2, "%y": 2}


def _parse_sql(raw: str, formats: tuple[str, ...]) -> str:
    """The first format that parses `raw`. A format whose numbers have no separator between
    them (%Y%m%d) applies only to exactly its width of digits: strptime would read 2024112 as
    2024-11-02 (or 2024-01-12)."""
    parts: list[str] = []
    group: list[str] = []
    for fmt in formats:
        if not re.search(r"%[YmdHMSy]%[YmdHMSy]", fmt):
            group.append(fmt)
            continue
        if group:
            parts.append(f"try_strptime({raw}, [{', '.join(_lit(f) for f in group)}])")
            group = []
        parts.append(
            f"CASE WHEN regexp_full_match({raw}, {_lit(_compact_pattern(fmt))}) "
            f"THEN try_strptime({raw}, {_lit(fmt)}) END"
        )
    if group:
        parts.append(f"try_strptime({raw}, [{', '.join(_lit(f) for f in group)}])")
    return parts[0] if len(parts) == 1 else "coalesce(" + ", ".join(parts) + ")"


def _compact_pattern(fmt: str) -> str:
    """A regular expression of what a compact format reads: each number at its full width."""
    out = []
    for piece in re.split(r"(%[A-Za-z%])", fmt):
        if piece in _DIGITS:
            out.append(f"[0-9]{{{_DIGITS[piece]}}}")
        elif piece.startswith("%") and len(piece) == 2:
            out.append(".+?")
        else:
            out.extend(c if c.isalnum() else f"\\x{{{ord(c):x}}}" for c in piece)
    return "".join(out)


_THOUSANDS = r"[+-]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?"
"""A number with thousands separators, as Chinese spreadsheets export it: 1,234 or 1,234.5."""


def _number_sql(raw: str, scale: float | None) -> str:
    """A finite number, else NULL (the row is quarantined as invalid_amount).

    NaN, inf and overflowing values (1e400) are not amounts: a NaN would poison every max() over
    the records of its company. Commas are only accepted as thousands separators ("1,2,3" is not
    a number).
    """
    expr = (
        f"(CASE WHEN NOT contains({raw}, ',') THEN TRY_CAST({raw} AS DOUBLE) "
        f"WHEN regexp_full_match({raw}, {_lit(_THOUSANDS)}) "
        f"THEN TRY_CAST(replace({raw}, ',', '') AS DOUBLE) END)"
    )
    if scale:
        expr = f"({expr} * {float(scale)!r})"
    return f"(CASE WHEN isfinite({expr}) THEN {expr} END)"


def _attributes_sql(mapping: Mapping) -> str:
    if mapping.attributes_json:
        return _text(mapping.attributes_json)
    if not mapping.attributes:
        return "NULL"
    args = []
    for name, spec in mapping.attributes.items():
        expr = _field_sql(spec)
        if spec.type == "int":
            expr = f"TRY_CAST(TRY_CAST({expr} AS DOUBLE) AS BIGINT)"
        elif spec.type == "float":
            expr = f"TRY_CAST({expr} AS DOUBLE)"
        args += [_lit(name), expr]
    return f"CAST(json_object({', '.join(args)}) AS VARCHAR)"


# ---- the ingestion run ------------------------------------------------------------------------


@dataclass
class _Context:
    kind: str
    source_dept: str
    source_file: str
    today: date
    mapping: Mapping
    catalogue: Catalogue
    history: bool = False
    grace_days: int = 0

    def known_dates_sql(self) -> str:
        """SQL: the `recorded_date` (the day known here) and `source_recorded_date` (the file's
        date, only when it arrived late) of a row whose file says `recorded_date`."""
        if self.history:  # a back-fill: the file's dates are the days known
            return "recorded_date, CAST(NULL AS DATE) AS source_recorded_date"
        today = _lit(self.today.isoformat())
        late = f"recorded_date < DATE {_lit((self.today - timedelta(days=self.grace_days)).isoformat())}"
        return (
            f"CASE WHEN {late} THEN DATE {today} ELSE recorded_date END AS recorded_date, "
            f"CASE WHEN {late} THEN recorded_date END AS source_recorded_date"
        )


def ingest_file(
    store: Store,
    path: Path | str,
    kind: str,
    source_dept: str,
    mapping: Mapping | str | Path | None = None,
    today: date | None = None,
    catalogue: Catalogue | None = None,
    progress: Callable[[str], None] | None = None,
    encoding: str | None = None,
    history: bool = False,
    grace_days: int = 0,
    rows_at_once: int | None = None,
) -> IngestResult:
    """Ingest one file into the store; see the module docstring. `encoding` (of a CSV file)
    overrides the mapping's (default UTF-8). `history`: the file back-fills history, its recorded
    dates are kept; else a row recorded before `today` less `grace_days` is stored as recorded
    `today` (late delivery). `rows_at_once`: see `ROWS_AT_ONCE`."""
    path = Path(path)
    if kind not in ("records", "entities"):
        raise IngestError(f"unknown kind {kind!r}: records or entities")
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    if mapping is not None and not isinstance(mapping, Mapping):
        try:
            mapping = load_mapping(mapping)
        except (MappingError, FileNotFoundError) as exc:
            raise IngestError(str(exc)) from None
    if mapping is not None and mapping.kind != kind:
        raise IngestError(f"mapping is for {mapping.kind}, not {kind}")
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise IngestError(f"unknown encoding {encoding!r} (e.g. utf-8, gbk, gb18030)") from None
    rows_at_once = ROWS_AT_ONCE if rows_at_once is None else rows_at_once
    if rows_at_once < 1:
        raise IngestError(f"rows_at_once must be at least 1, got {rows_at_once}")
    text_encoding = encoding or (mapping.encoding if mapping else "utf-8")
    sheet = mapping.sheet if mapping else None

    def read(prepare: _Prepare) -> Callable[[Path], _Input]:
        # the file's first part (a block of a CSV) is read and its columns checked before the
        # store's lock is taken: a file refused for them (or its type) waits for no writer
        unread: list[UnreadRow] = []
        chunks = read_chunks(path, text_encoding, sheet, unread)
        first = next(c for c in chunks if c is not None)
        prepare.check(first)
        return lambda spool: _collect(
            itertools.chain([first], chunks), prepare, rows_at_once, spool, unread
        )

    return _ingest(
        store, read, kind, source_dept, mapping, today, catalogue, str(path), progress, history,
        grace_days,
    )  # fmt: skip


def ingest_table(
    store: Store,
    table: pa.Table,
    kind: str,
    source_dept: str,
    mapping: Mapping | None = None,
    today: date | None = None,
    catalogue: Catalogue | None = None,
    source_file: str = "<table>",
    unread: list[UnreadRow] | None = None,
    progress: Callable[[str], None] | None = None,
    history: bool = False,
    grace_days: int = 0,
) -> IngestResult:
    """Ingest an Arrow table (text or typed columns, optionally `_row`) into the store;
    `unread` are the rows of its file that could not be read (quarantined as they are);
    `history` and `grace_days` as for `ingest_file`. The table is taken whole, in memory."""

    def read(prepare: _Prepare) -> Callable[[Path], _Input]:
        if "_row" not in table.column_names:
            rows = pa.array(np.arange(1, table.num_rows + 1), pa.int64())
            whole = prepare(table.append_column("_row", rows))
        else:
            whole = prepare(table)
        given = _Input(whole, None, whole.num_rows, list(unread or []))
        return lambda _spool: given

    return _ingest(
        store, read, kind, source_dept, mapping, today, catalogue, source_file, progress,
        history, grace_days,
    )  # fmt: skip


ROWS_AT_ONCE = 1_000_000
"""Rows of a file prepared at a time (trimmed, codes checked). A file of more rows is written,
so prepared, to a temporary Parquet file in the batch's staging directory, which DuckDB reads
within its memory limit: the memory taken does not grow with the file. A file of at most this
many rows stays in memory, as one Arrow table."""

PARQUET_BATCH_ROWS = 1 << 21
"""Rows of a Parquet input file read at a time: a row group of at most this many rows is read
whole (pyarrow writes groups of 1 Mi rows), a larger one in batches of this many."""


@dataclass
class _Input:
    """The prepared rows of the input: an Arrow table in memory or a spooled Parquet file."""

    table: pa.Table | None
    spool: Path | None
    rows: int
    unread: list[UnreadRow]

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Make the rows view `raw_input` of `con`."""
        if self.table is not None:
            con.register("raw_input", self.table)
        else:
            assert self.spool is not None
            con.execute(f"CREATE TEMP VIEW raw_input AS SELECT * FROM {_spooled(self.spool)}")


class _Prepare:
    """Checks a part of the input and prepares it for the mapping's SQL: text trimmed,
    time zones to China's wall-clock time, derived codes added and codes checked. The first
    part fixes the mapping (the identity mapping of its columns when none is given); every
    part must have the first one's columns."""

    def __init__(self, kind: str, mapping: Mapping | None, make: Callable[[Mapping], _Context]):
        self.kind, self.mapping, self.make = kind, mapping, make
        self.ctx: _Context | None = None
        self.columns: list[str] | None = None

    def check(self, table: pa.Table) -> None:
        """The part's columns: reserved names, and the first part fixes the mapping."""
        for name in ("_seq", "_key"):
            if name in table.column_names:
                raise IngestError(f"column {name!r} is reserved for ingestion's own use: rename it")
        columns = [c for c in table.column_names if c != "_row"]
        if self.ctx is None:
            mapping = self.mapping or identity_mapping(self.kind, table.column_names)
            self.ctx = self.make(mapping)
            self.columns = columns
            _check_columns(self.ctx, table)
        elif columns != self.columns:
            raise IngestError(
                f"{Path(self.ctx.source_file).name}: the columns changed within the file: "
                f"{', '.join(self.columns or [])} became {', '.join(columns)}"
            )

    def __call__(self, table: pa.Table) -> pa.Table:
        self.check(table)
        assert self.ctx is not None
        table = _checked_row_numbers(table)
        table = _durations_as_text(_china_local_timestamps(_trimmed_text(table)))
        table = _half_floats_and_wide_decimals_as_text(table)
        table = _add_derived_codes(self.ctx, table)
        if _uscc_spec(self.ctx) is not None:
            table = _precheck_codes(self.ctx, table)
        return table


def _durations_as_text(table: pa.Table) -> pa.Table:
    """Duration columns (Parquet, Arrow) → text as DuckDB writes an interval (`00:00:01`), as the
    mapping's SQL reads them; a spool would otherwise keep them as bare integers."""
    for i, column_field in enumerate(table.schema):
        if pa.types.is_duration(column_field.type):
            with duckdb.connect() as con:
                con.register("durations", pa.table({"d": table.column(i)}))
                text = con.sql("SELECT CAST(d AS VARCHAR) AS d FROM durations").to_arrow_table()
            table = table.set_column(i, column_field.name, text.column("d"))
    return table


def _half_floats_and_wide_decimals_as_text(table: pa.Table) -> pa.Table:
    """Columns of types DuckDB cannot read from Arrow → text, the same in memory and spooled:
    16-bit floats as their shortest decimal without exponent (0.1, not the 0.0999755859375 it
    is stored as, which a spool read as FLOAT would have made 0.099975586), 256-bit decimals
    exactly. Found only in Parquet files; without this, one piece failed with DuckDB's
    NotImplementedException."""
    for i, column_field in enumerate(table.schema):
        if pa.types.is_float16(column_field.type):
            values = table.column(i).combine_chunks()
            halves = values.to_numpy(zero_copy_only=False).astype(np.float16)
            distinct, index = np.unique(halves, return_inverse=True)  # at most 65,536
            texts = pa.array(
                [np.format_float_positional(h, unique=True, trim="-") for h in distinct],
                pa.string(),
            )
            text = pc.if_else(values.is_null(), None, pc.take(texts, pa.array(index)))
            table = table.set_column(i, column_field.name, text)
        elif pa.types.is_decimal256(column_field.type):
            table = table.set_column(i, column_field.name, table.column(i).cast(pa.string()))
    return table


class _SpoolWriter:
    """Writes prepared parts to a Parquet file on a thread of its own while the next part is read
    and prepared (pyarrow's writer and reader release the GIL), one part in flight at most."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: pq.ParquetWriter | None = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self.in_flight: Future[None] | None = None

    def write(self, table: pa.Table) -> None:
        self.wait()
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.path, table.schema, compression=SPOOL_COMPRESSION)
        self.in_flight = self.pool.submit(
            self.writer.write_table, table.cast(self.writer.schema), SPOOL_ROW_GROUP
        )

    def wait(self) -> None:
        if self.in_flight is not None:
            in_flight, self.in_flight = self.in_flight, None
            in_flight.result()

    def close(self) -> None:
        """Finish writing (raises what the writing raised) and close the file."""
        try:
            self.wait()
        finally:
            if self.writer is not None:
                self.writer.close()
            self.pool.shutdown()

    def discard(self) -> None:
        """Close and remove the file, whatever happened to the writing."""
        with contextlib.suppress(Exception):
            self.close()
        self.path.unlink(missing_ok=True)


def _collect(
    chunks: Iterator[pa.Table | None],
    prepare: _Prepare,
    rows_at_once: int,
    spool: Path,
    unread: list[UnreadRow],
) -> _Input:
    """The file's rows prepared `rows_at_once` at a time: in memory when they are no more, else
    written to `spool` (Parquet) part by part."""
    pending: list[pa.Table] = []
    pending_rows = next_row = written = 0
    writer: _SpoolWriter | None = None
    last_row: int | None = None  # the row numbers written so far increase (so none repeats)
    increasing = True

    def write(part: pa.Table) -> None:
        nonlocal writer, written, last_row, increasing
        prepared = prepare(part)
        writer = writer or _SpoolWriter(spool)
        writer.write(prepared)
        rows = prepared.column("_row")
        if len(rows):
            first, last = pc.min_max(rows).values()
            ordered = len(rows) < 2 or pc.all(pc.greater(rows[1:], rows[:-1])).as_py()
            increasing = increasing and ordered and (last_row is None or first.as_py() > last_row)
            last_row = last.as_py()
        written += prepared.num_rows

    try:
        for chunk in chunks:
            if chunk is None:  # read again from the start
                pending, pending_rows, next_row, written = [], 0, 0, 0
                last_row, increasing = None, True
                if writer is not None:
                    writer.discard()
                    writer = None
                continue
            if "_row" not in chunk.column_names:
                numbers = np.arange(next_row + 1, next_row + chunk.num_rows + 1)
                chunk = chunk.append_column("_row", pa.array(numbers, pa.int64()))
            next_row += chunk.num_rows
            pending.append(chunk)
            pending_rows += chunk.num_rows
            while pending_rows > rows_at_once:  # more to come: write a part
                table = pa.concat_tables(pending)
                write(table.slice(0, rows_at_once))
                pending, pending_rows = [table.slice(rows_at_once)], pending_rows - rows_at_once
        table = pa.concat_tables(pending)
        if writer is None:
            whole = prepare(table)
            return _Input(whole, None, whole.num_rows, unread)
        if table.num_rows:
            write(table)
        writer.close()
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    if not increasing:  # numbers given by the file: each once in the whole file
        with duckdb.connect() as con:
            repeated = _scalar(
                con, f"SELECT count(*) - count(DISTINCT _row) FROM {_spooled(spool)}"
            )
        if repeated:
            raise IngestError(
                "column '_row' is reserved for the row number and must be a whole number, "
                "different in every row: rename it"
            )
    return _Input(None, spool, written, unread)


SPOOL_COMPRESSION = "none"
"""The spool is read once, soon after: uncompressed Parquet (dictionary-encoded) wrote 5 M rows in
0.77 s against 1.02 s with lz4, and DuckDB read either in 0.14 s."""

SPOOL_ROW_GROUP = 1 << 17
"""Rows of a spool's row group: DuckDB reads the groups in parallel."""


def _ingest(
    store: Store,
    read: Callable[[_Prepare], Callable[[Path], _Input]],
    kind: str,
    source_dept: str,
    mapping: Mapping | None,
    today: date | None,
    catalogue: Catalogue | None,
    source_file: str,
    progress: Callable[[str], None] | None,
    history: bool,
    grace_days: int,
) -> IngestResult:
    if not 0 <= grace_days <= MAX_GRACE_DAYS:
        raise IngestError(f"grace_days must be 0 to {MAX_GRACE_DAYS}, got {grace_days}")
    started = time.perf_counter()
    step = progress or (lambda _msg: None)
    catalogue = catalogue or default_catalogue()
    day = today or china_today()

    def make(chosen: Mapping) -> _Context:
        return _Context(
            kind, source_dept, source_file, day, chosen, catalogue, history, grace_days
        )  # fmt: skip

    prepare = _Prepare(kind, mapping, make)
    step("reading")
    rest = read(prepare)  # what can be checked before the lock
    with store.begin(
        kind, source_file=source_file, source_dept=source_dept, history=history,
        ingestion_day=day.isoformat(),
    ) as batch:  # fmt: skip
        given = rest(batch.staging / "_input" / "rows.parquet")
        ctx = prepare.ctx
        assert ctx is not None
        prechecked = _uscc_spec(ctx) is not None
        with store.connect() as con:
            result = IngestResult(batch.batch_id, kind, source_file, source_dept, history=history)
            result.rows_read = given.rows + len(given.unread)
            given.register(con)
            _catalogue_table(con, ctx.catalogue)
            _create_source_view(con, ctx)
            step("mapping")
            try:
                # codes already checked on the input column: map and check in one pass; codes
                # computed by the mapping: materialise them, then check
                if prechecked:
                    con.execute(f"CREATE TEMP VIEW mapped AS {_stage1_sql(ctx, prechecked)}")
                else:
                    _register_mapped(con, ctx)
                step("checking rules")
                con.execute(
                    "CREATE TEMP TABLE checked AS "
                    + (_records_checks_sql(ctx) if kind == "records" else _entity_checks_sql(ctx))
                )
            except _MAPPING_SQL_ERRORS as exc:  # a mapping's `sql:` DuckDB cannot compile or run
                problem = str(exc).splitlines()[0]
                raise IngestError(
                    f"{Path(source_file).name}: the SQL of {ctx.mapping.origin} fails: {problem}"
                ) from None
            result.rows_mapped = _scalar(con, "SELECT count(*) FROM checked")
            step("checking conflicts")
            _mark_conflicts(con, ctx)
            step("writing")
            _write_new_rows(con, batch, ctx, result)
            step("writing quarantine")
            _write_quarantine(con, batch, ctx, result, given.unread)
        batch.info.update(
            rows_read=result.rows_read, stored=result.stored, quarantined=result.quarantined,
            already_stored=result.already_stored, by_reason=result.by_reason,
            restamped=result.restamped, earliest_source_recorded=result.earliest_source_recorded,
        )  # fmt: skip
    step("committed")
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _register_mapped(con: duckdb.DuckDBPyConnection, ctx: _Context) -> None:
    """The mapped rows (codes computed by the mapping) as `mapped`, with `uscc_ok`: the rows are
    materialised by DuckDB (within its memory limit), each distinct code checked once with
    numpy."""
    con.execute(f"CREATE TEMP TABLE mapped_rows AS {_stage1_sql(ctx, prechecked=False)}")
    codes = con.sql("SELECT DISTINCT uscc FROM mapped_rows WHERE uscc IS NOT NULL").to_arrow_table()
    column = codes.column("uscc")
    con.register("mapped_codes", pa.table({"uscc": column, "ok": uscc.valid_mask(column)}))
    con.execute(
        "CREATE TEMP VIEW mapped AS SELECT m.*, coalesce(c.ok, false) AS uscc_ok "
        "FROM mapped_rows m LEFT JOIN mapped_codes c ON c.uscc = m.uscc"
    )


def _spooled(path: Path) -> str:
    """SQL: the rows of a spool (no Hive partitions: the store's path may hold `key=value`)."""
    return f"read_parquet({_lit(str(path))}, hive_partitioning = false)"


def _checked_row_numbers(table: pa.Table) -> pa.Table:
    """`_row` given with the table (or a file's column of that name): whole numbers, one per row,
    each once, for every row is told apart by it; else the file as a whole is refused."""
    if table.column_names.count("_row") > 1:
        raise IngestError("column '_row' appears twice")
    try:
        rows = pc.cast(table.column("_row"), pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise IngestError(
            "column '_row' is reserved for the row number and holds something else: rename it"
        ) from None
    rows = rows.combine_chunks()
    increasing = len(rows) < 2 or pc.all(pc.greater(rows[1:], rows[:-1])).as_py()  # read_input's
    if rows.null_count or (not increasing and pc.count_distinct(rows).as_py() != len(rows)):
        raise IngestError(
            "column '_row' is reserved for the row number and must be a whole number, different "
            "in every row: rename it"
        )
    return table.set_column(table.column_names.index("_row"), "_row", rows)


_MAPPING_SQL_ERRORS = (
    duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException,
    duckdb.ConversionException, duckdb.InvalidInputException,
)  # fmt: skip
"""What a mapping's own SQL expressions can raise; the file as a whole cannot be ingested."""


def _check_columns(ctx: _Context, table: pa.Table) -> None:
    present = set(table.column_names)
    missing = sorted(ctx.mapping.source_columns() - present)
    if missing:
        raise IngestError(
            f"{Path(ctx.source_file).name}: missing column(s) {', '.join(missing)}; "
            f"the file has: {', '.join(c for c in table.column_names if c != '_row')}"
        )
    required = RECORD_REQUIRED if ctx.kind == "records" else ENTITY_REQUIRED
    unmapped = [c for c in required if c not in ctx.mapping.fields]
    if unmapped:
        raise IngestError(
            f"{Path(ctx.source_file).name}: no column or mapping for required field(s) "
            f"{', '.join(unmapped)}; the file has: "
            f"{', '.join(c for c in table.column_names if c != '_row')} (give --mapping)"
        )


def _china_local_timestamps(table: pa.Table) -> pa.Table:
    """Time-zone-aware timestamp columns (Parquet, Arrow) → China's wall-clock time, no zone."""
    for i, column_field in enumerate(table.schema):
        kind = column_field.type
        if pa.types.is_timestamp(kind) and kind.tz is not None:
            china = table.column(i).cast(pa.timestamp(kind.unit, CHINA_STANDARD_TIME))
            table = table.set_column(i, column_field.name, pc.local_timestamp(china))
    return table


def _add_derived_codes(ctx: _Context, table: pa.Table) -> pa.Table:
    derive = ctx.mapping.derive
    for spec in ctx.mapping.fields.values():
        if spec.derive_uscc is None or derive is None:
            continue
        source = pc.utf8_trim_whitespace(table.column(spec.derive_uscc))
        uniques = pc.unique(source).to_pylist()
        codes = {
            u: uscc.derive(u, derive.namespace, derive.kind, derive.region) for u in uniques if u
        }
        keys = pa.array(list(codes), pa.string())
        values = pa.array(list(codes.values()), pa.string())
        derived = pc.take(values, pc.index_in(source, value_set=keys))
        table = table.append_column(f"__derived_{spec.derive_uscc}", derived)
    return table


def _create_source_view(con: duckdb.DuckDBPyConnection, ctx: _Context) -> None:
    unpivot = ctx.mapping.unpivot
    if unpivot is None:
        con.execute("CREATE TEMP VIEW src AS SELECT *, _row AS _seq FROM raw_input")
        return
    width = len(unpivot.columns)
    parts = [
        f"SELECT *, {_lit(name)} AS {_ident(unpivot.name_column)}, {_text(col)} AS "
        f"{_ident(unpivot.value_column)}, _row * {width} + {i} AS _seq "
        f"FROM raw_input WHERE {_text(col)} IS NOT NULL"
        for i, (col, name) in enumerate(unpivot.columns.items())
    ]
    con.execute("CREATE TEMP VIEW src AS " + " UNION ALL ".join(parts))


def _uscc_spec(ctx: _Context) -> FieldSpec | None:
    """The code's field spec when it is a plain or derived column (checkable before mapping)."""
    spec = ctx.mapping.fields.get("uscc")
    if spec is None or spec.map or ctx.mapping.unpivot is not None:
        return None
    return spec if (spec.column is not None or spec.derive_uscc is not None) else None


def _precheck_codes(ctx: _Context, table: pa.Table) -> pa.Table:
    """Add `__uscc` (compacted code) and `__uscc_ok` (valid) computed with Arrow and numpy."""
    spec = _uscc_spec(ctx)
    assert spec is not None
    source = spec.column if spec.column is not None else f"__derived_{spec.derive_uscc}"
    column = table.column(source).combine_chunks()
    if not pa.types.is_string(column.type):
        column = column.cast(pa.string())
    ok = uscc.valid_mask(column)
    if not ok.all():  # compact only what fails as it is (spaces, hyphens, lower case, empty)
        redo = pa.array(~ok)
        fixed = pc.utf8_upper(
            pc.replace_substring_regex(column.filter(redo), uscc.SEPARATORS_RE2, "")
        )
        fixed = pc.if_else(pc.equal(fixed, ""), pa.scalar(None, pa.string()), fixed)
        column = pc.replace_with_mask(column, redo, fixed)
        ok[~ok] = uscc.valid_mask(fixed)
    table = table.append_column("__uscc", column)
    return table.append_column("__uscc_ok", pa.array(ok))


def _stage1_sql(ctx: _Context, prechecked: bool) -> str:
    """Canonical text columns from the source: the compiled mapping."""
    fields = ctx.mapping.fields
    columns = RECORD_COLUMNS if ctx.kind == "records" else ENTITY_COLUMNS
    select = ["_row", "_seq"]
    for name in dict.fromkeys((*columns, "recorded_date")):
        if name == "attributes":
            select.append(f"{_attributes_sql(ctx.mapping)} AS attributes_raw")
            continue
        expr = _field_sql(fields[name]) if name in fields else "NULL"
        if name == "uscc":
            expr = (
                '"__uscc"'
                if prechecked
                else f"upper(regexp_replace({expr}, {_lit(uscc.SEPARATORS_RE2)}, '', 'g'))"
            )
        if name == "source_dept":
            expr = f"coalesce({expr}, {_lit(ctx.source_dept)})"
        suffix = (
            ""
            if name
            in (
                "record_id",
                "uscc",
                "category",
                "source_dept",
                "severity",
                "name",
                "industry",
                "region",
                "entity_type",
                "status",
            )
            else "_raw"
        )
        select.append(f"CAST({expr} AS VARCHAR) AS {name}{suffix}")
    if prechecked:
        select.append('"__uscc_ok" AS uscc_ok')
    return "SELECT " + ", ".join(select) + " FROM src"


def _formats(ctx: _Context, name: str) -> tuple[str, ...]:
    spec = ctx.mapping.fields.get(name)
    return spec.formats if spec is not None and spec.formats else ctx.mapping.date_formats


def _scale(ctx: _Context, name: str) -> float | None:
    spec = ctx.mapping.fields.get(name)
    return spec.scale if spec is not None else None


def _catalogue_table(con: duckdb.DuckDBPyConnection, catalogue: Catalogue) -> None:
    con.register(
        "catalogue",
        pa.table(
            {
                "code": [c.code for c in catalogue.categories],
                "severities": [list(c.severities) for c in catalogue.categories],
                "severity_required": [c.severity_required for c in catalogue.categories],
                "amount_rule": [c.amount for c in catalogue.categories],
                "required_attributes": [list(c.required_attributes) for c in catalogue.categories],
                "negative_amount_allowed": [
                    c.negative_amount_allowed for c in catalogue.categories
                ],
            }
        ),
    )


def _required_attributes_sql(catalogue: Catalogue) -> str:
    """True where a category's required attribute is missing or null (one test per category)."""
    tests = [
        f"(category = {_lit(c.code)} AND (json_extract(attributes_text, {_lit('$.' + a)}) IS NULL "
        f"OR json_type(json_extract(attributes_text, {_lit('$.' + a)})) = 'NULL'))"
        for c in catalogue.categories
        for a in c.required_attributes
    ]
    return " OR ".join(tests) if tests else "false"


def _records_checks_sql(ctx: _Context) -> str:
    today = _lit(ctx.today.isoformat())
    event = _date_sql("event_date_raw", _formats(ctx, "event_date"))
    recorded = _date_sql("recorded_date_raw", _formats(ctx, "recorded_date"))
    amount = _number_sql("amount_raw", _scale(ctx, "amount"))
    return f"""
    WITH t AS (
        SELECT m.*, {event} AS event_date,
               coalesce({recorded}, CASE WHEN recorded_date_raw IS NULL THEN DATE {today} END) AS recorded_date,
               {amount} AS amount,
               coalesce(attributes_raw, '{{}}') AS attributes_text,
               CAST(try(json(coalesce(attributes_raw, '{{}}'))) AS VARCHAR) AS attributes_json,
               c.code AS known, c.severities AS allowed, c.severity_required,
               c.amount_rule, c.required_attributes, c.negative_amount_allowed
        FROM mapped m LEFT JOIN catalogue c ON c.code = m.category
    ), v AS (
        SELECT *, CASE
            WHEN record_id IS NULL THEN 'missing_field'
            WHEN uscc IS NULL THEN 'missing_field'
            WHEN NOT uscc_ok THEN 'invalid_uscc'
            WHEN category IS NULL THEN 'missing_field'
            WHEN known IS NULL THEN 'unknown_category'
            WHEN event_date_raw IS NULL THEN 'missing_field'
            WHEN event_date IS NULL OR event_date < DATE '{EARLIEST_DATE}' THEN 'invalid_date'
            WHEN recorded_date IS NULL OR recorded_date < DATE '{EARLIEST_DATE}' THEN 'invalid_date'
            WHEN event_date > DATE {today} OR recorded_date > DATE {today} THEN 'future_date'
            WHEN recorded_date < event_date THEN 'recorded_before_event'
            WHEN severity IS NOT NULL AND NOT list_contains(allowed, severity) THEN 'severity_not_allowed'
            WHEN severity IS NULL AND severity_required THEN 'missing_severity'
            WHEN amount_raw IS NOT NULL AND amount IS NULL THEN 'invalid_amount'
            WHEN amount < 0 AND NOT negative_amount_allowed THEN 'negative_amount'
            WHEN amount IS NOT NULL AND amount_rule = 'none' THEN 'amount_not_applicable'
            WHEN amount IS NULL AND amount_rule = 'required' THEN 'invalid_amount'
            WHEN attributes_json IS NULL THEN 'invalid_attributes'
            WHEN left(ltrim(attributes_text), 1) <> '{{' THEN 'invalid_attributes'
            WHEN {_required_attributes_sql(ctx.catalogue)} THEN 'missing_attribute'
        END AS reason
        FROM t
    )
    SELECT _row, _seq, record_id AS _key, record_id, uscc, category, event_date,
        {ctx.known_dates_sql()}, source_dept, severity, amount,
        CASE WHEN reason IS NULL THEN attributes_json END AS attributes,
        reason,
        CASE reason
            WHEN 'missing_field' THEN 'missing ' || CASE WHEN record_id IS NULL THEN 'record_id'
                WHEN uscc IS NULL THEN 'uscc' WHEN category IS NULL THEN 'category' ELSE 'event_date' END
            WHEN 'unknown_category' THEN format('category "{{}}" is not in catalogue {ctx.catalogue.version}', category)
            WHEN 'invalid_date' THEN CASE WHEN event_date IS NULL OR event_date < DATE '{EARLIEST_DATE}'
                THEN format('event_date "{{}}" is not a valid date on or after {EARLIEST_DATE}', event_date_raw)
                ELSE format('recorded_date "{{}}" is not a valid date on or after {EARLIEST_DATE}', recorded_date_raw) END
            WHEN 'future_date' THEN CASE WHEN event_date > DATE {today}
                THEN format('event_date {{}} is after today ({{}})', event_date, DATE {today})
                ELSE format('recorded_date {{}} is after today ({{}})', recorded_date, DATE {today}) END
            WHEN 'recorded_before_event' THEN format('recorded_date {{}} is before event_date {{}}', recorded_date, event_date)
            WHEN 'severity_not_allowed' THEN CASE WHEN len(allowed) = 0
                THEN format('category {{}} takes no severity, got "{{}}"', category, severity)
                ELSE format('severity "{{}}" is not allowed for {{}} (allowed: {{}})', severity, category, array_to_string(allowed, ', ')) END
            WHEN 'missing_severity' THEN format('category {{}} requires a severity ({{}})', category, array_to_string(allowed, ', '))
            WHEN 'invalid_amount' THEN CASE WHEN amount_raw IS NULL
                THEN format('category {{}} requires an amount', category)
                ELSE format('amount "{{}}" is not a finite number', amount_raw) END
            WHEN 'negative_amount' THEN format('amount {{}} is negative', amount)
            WHEN 'amount_not_applicable' THEN format('category {{}} takes no amount, got {{}}', category, amount)
            WHEN 'invalid_attributes' THEN format('attributes "{{}}" are not a JSON object', left(attributes_text, 200))
            WHEN 'missing_attribute' THEN format('category {{}} requires attribute(s) {{}}', category, array_to_string(required_attributes, ', '))
        END AS message
    FROM v
    """


def _entity_checks_sql(ctx: _Context) -> str:
    today = _lit(ctx.today.isoformat())
    established = _date_sql("established_date_raw", _formats(ctx, "established_date"))
    recorded = _date_sql("recorded_date_raw", _formats(ctx, "recorded_date"))
    capital = _number_sql("registered_capital_raw", _scale(ctx, "registered_capital"))
    market = "(" + ", ".join(_lit(t) for t in uscc.MARKET_ENTITY_TYPES) + ")"
    types = "[" + ", ".join(_lit(t) for t in ENTITY_TYPES) + "]"
    statuses = "[" + ", ".join(_lit(s) for s in ENTITY_STATUSES) + "]"
    provinces = "[" + ", ".join(_lit(f"{p:02d}") for p in sorted(uscc.PROVINCES)) + "]"
    return f"""
    WITH t AS (
        SELECT m.*,
            {established} AS established_date,
            coalesce({recorded}, CASE WHEN recorded_date_raw IS NULL THEN DATE {today} END) AS recorded_date,
            {capital} AS registered_capital,
            CASE WHEN uscc_ok THEN {uscc.entity_type_sql("uscc")} END AS code_type,
            coalesce(region, CASE WHEN uscc_ok THEN substr(uscc, 3, 6) END) AS region_final,
            coalesce(status, 'active') AS status_final
        FROM mapped m
    ), v AS (
        SELECT *, coalesce(entity_type, code_type) AS type_final, CASE
            WHEN uscc IS NULL OR name IS NULL THEN 'missing_field'
            WHEN NOT uscc_ok THEN 'invalid_uscc'
            WHEN established_date_raw IS NOT NULL AND (established_date IS NULL OR established_date < DATE '{EARLIEST_DATE}') THEN 'invalid_date'
            WHEN recorded_date IS NULL OR recorded_date < DATE '{EARLIEST_DATE}' THEN 'invalid_date'
            WHEN established_date > DATE {today} OR recorded_date > DATE {today} THEN 'future_date'
            WHEN registered_capital_raw IS NOT NULL AND registered_capital IS NULL THEN 'invalid_amount'
            WHEN registered_capital < 0 THEN 'negative_amount'
            WHEN industry IS NOT NULL AND NOT regexp_full_match(industry, '[A-T]([0-9]{{2,4}})?') THEN 'invalid_industry'
            WHEN NOT regexp_full_match(region_final, '[0-9]{{6}}') OR NOT list_contains({provinces}, left(region_final, 2)) THEN 'invalid_region'
            WHEN NOT list_contains({types}, coalesce(entity_type, code_type)) THEN 'invalid_entity_type'
            WHEN entity_type IS NOT NULL AND code_type IN {market} AND entity_type <> code_type THEN 'invalid_entity_type'
            -- only market regulation registers enterprises, individual businesses and cooperatives
            -- (codes 91-93): another code declared one of them would be taken to file its annual
            -- reports (`features.specs.FeatureSpec.applies_to`)
            WHEN entity_type IN {market} AND code_type NOT IN {market} THEN 'invalid_entity_type'
            WHEN NOT list_contains({statuses}, status_final) THEN 'invalid_status'
        END AS reason
        FROM t
    )
    SELECT _row, _seq, uscc || ' recorded ' || CAST(recorded_date AS VARCHAR) AS _key,
        uscc, name, industry, region_final AS region, type_final AS entity_type,
        registered_capital, established_date, status_final AS status, {ctx.known_dates_sql()},
        reason,
        CASE reason
            WHEN 'missing_field' THEN 'missing ' || CASE WHEN uscc IS NULL THEN 'uscc' ELSE 'name' END
            WHEN 'invalid_date' THEN CASE WHEN recorded_date IS NULL OR recorded_date < DATE '{EARLIEST_DATE}'
                THEN format('recorded_date "{{}}" is not a valid date on or after {EARLIEST_DATE}', recorded_date_raw)
                ELSE format('established_date "{{}}" is not a valid date on or after {EARLIEST_DATE}', established_date_raw) END
            WHEN 'future_date' THEN format('date after today ({{}}): established {{}}, recorded {{}}', DATE {today}, established_date, recorded_date)
            WHEN 'invalid_amount' THEN format('registered_capital "{{}}" is not a finite number', registered_capital_raw)
            WHEN 'negative_amount' THEN format('registered_capital {{}} is negative', registered_capital)
            WHEN 'invalid_industry' THEN format('industry "{{}}" is not a GB/T 4754 code (section letter A-T, optional 2-4 digits)', industry)
            WHEN 'invalid_region' THEN format('region "{{}}" is not a 6-digit GB/T 2260 division code', region_final)
            WHEN 'invalid_entity_type' THEN CASE WHEN NOT list_contains({types}, type_final)
                THEN format('entity_type "{{}}" is unknown (one of: {", ".join(ENTITY_TYPES)})', type_final)
                ELSE format('entity_type "{{}}" contradicts the code, which says {{}}', entity_type, code_type) END
            WHEN 'invalid_status' THEN format('status "{{}}" is unknown (one of: {", ".join(ENTITY_STATUSES)})', status_final)
        END AS message
    FROM v
    """


CONTENT = {
    "records": ("uscc", "category", "event_date", "source_dept", "severity", "amount", "attributes"),
    "entities": (
        "name", "industry", "region", "entity_type", "registered_capital", "established_date",
        "status",
    ),
}  # fmt: skip
"""What makes two rows with the same key the same record (recorded_date is when we learned it)."""


def canonical_json(text: str | None) -> str | None:
    """A JSON text with its object keys sorted, to compare attributes whatever their key order
    (the stored text itself is kept as it came)."""
    if text is None:
        return None
    try:
        return json.dumps(
            json.loads(text), ensure_ascii=False, sort_keys=True, separators=(",", ":")
        )
    except ValueError:
        return text


def _content_struct(content: tuple[str, ...], alias: str, canonical: bool = True) -> str:
    """The content columns of `alias` as one comparable struct (attributes canonical, unless
    `canonical` is false: then as their text)."""
    fields = [
        f"{c} := canonical_json({alias}.{c})"
        if c == "attributes" and canonical
        else f"{c} := {alias}.{c}"
        for c in content
    ]
    return "struct_pack(" + ", ".join(fields) + ")"


def _attributes_differ(ours: str, theirs: str) -> str:
    """SQL: whether attributes `ours` and `theirs` (column expressions) differ as JSON.

    `canonical_json` is Python called row by row (about 0.4 s per 100,000 pairs): it runs only
    where the texts differ, which DuckDB guarantees for the branches of a CASE.
    """
    return (
        f"CASE WHEN {ours} IS NOT DISTINCT FROM {theirs} THEN false "
        f"ELSE canonical_json({ours}) IS DISTINCT FROM canonical_json({theirs}) END"
    )


def _same_content(content: tuple[str, ...], c: str, s: str) -> str:
    """SQL: whether rows `c` and `s` have the same content (attributes compared as JSON, and
    only when every other field is equal)."""
    plain = " AND ".join(
        f"{c}.{f} IS NOT DISTINCT FROM {s}.{f}" for f in content if f != "attributes"
    )
    if "attributes" not in content:
        return plain
    differ = _attributes_differ(f"{c}.attributes", f"{s}.attributes")
    return f"CASE WHEN {plain} THEN NOT ({differ}) ELSE false END"


def _mark_conflicts(con: duckdb.DuckDBPyConnection, ctx: _Context) -> None:
    """Within-file conflicts, identical duplicates, and rows already stored.

    The key is record_id for records and (uscc, recorded_date) for entities, whose versions over
    time are history, not conflicts. A record is already stored when its record_id is stored with
    the same content (else a conflict: changes come as events). An entity version is already
    stored when the store's latest word on its department date, known by its recorded_date, has
    the same content, or when it is the company's one version in the file and the version in
    force has the same content (the comments at the query say more).
    """
    content = CONTENT[ctx.kind]
    if ctx.kind == "records":
        con.create_function(
            "canonical_json", canonical_json, [duckdb.sqltype("VARCHAR")],
            duckdb.sqltype("VARCHAR"), side_effects=False,
        )  # fmt: skip
    struct = _content_struct(content, "c")
    raw_struct = _content_struct(content, "c", canonical=False)
    label = "record_id" if ctx.kind == "records" else "uscc"
    # repeats that differ as text are compared again as canonical JSON, only they
    con.execute(
        f"""CREATE TEMP TABLE dup AS
        WITH repeated AS (
            SELECT _key FROM checked WHERE reason IS NULL GROUP BY _key HAVING count(*) > 1
        ), texts AS (
            SELECT c._key, count(*) AS n, count(DISTINCT {raw_struct}) > 1 AS differ,
                min(c._seq) AS keep
            FROM checked c SEMI JOIN repeated r ON r._key = c._key
            WHERE c.reason IS NULL GROUP BY c._key
        ), contents AS (
            SELECT c._key, count(DISTINCT {struct}) > 1 AS differ
            FROM checked c SEMI JOIN (SELECT _key FROM texts WHERE differ) t ON t._key = c._key
            WHERE c.reason IS NULL GROUP BY c._key
        )
        SELECT t._key, t.n, coalesce(k.differ, false) AS conflict, t.keep
        FROM texts t LEFT JOIN contents k ON k._key = t._key"""
    )
    con.execute(
        f"""UPDATE checked SET reason = 'duplicate_conflict',
            message = format('{label} "{{}}" appears {{}} times in the file with different content', checked._key, dup.n)
        FROM dup WHERE dup.conflict AND checked._key = dup._key AND checked.reason IS NULL"""
    )
    key = "record_id" if ctx.kind == "records" else "uscc"
    table = "records" if ctx.kind == "records" else "entities"
    # first only the key column of the store, then the full rows of the (usually few) hits
    if ctx.kind == "records":
        # record ids are trimmed of every Unicode space; one stored before that was (ending in a
        # no-break space, say) is still the same record when it is sent again
        wanted = "(SELECT record_id FROM checked WHERE reason IS NULL)"
        # (two scans: an OR of the two tests made the first one a slower join, not a filter;
        # the ids sent are trimmed, so one with an edge space is in the second only)
        con.execute(
            f"""CREATE TEMP TABLE hits AS SELECT record_id, count(*) AS stored FROM (
                SELECT record_id FROM records WHERE record_id IN {wanted}
                UNION ALL
                SELECT record_id FROM records
                WHERE {_has_edge_space("record_id")} AND {_trimmed("record_id")} IN {wanted}
            ) GROUP BY record_id"""
        )
    else:
        con.execute(
            f"""CREATE TEMP TABLE hits AS SELECT DISTINCT {key} FROM {table}
            WHERE {key} IN (SELECT {key} FROM checked WHERE reason IS NULL)"""
        )
    if ctx.kind == "records":
        # what changed is worked out only for the (few) pairs whose content is not the same
        fields = ", ".join(f"c.{f}, s.{f} AS stored_{f}" for f in content)
        changed = (
            "list_filter(["
            + ", ".join(
                f"CASE WHEN {f} IS DISTINCT FROM stored_{f} THEN {_lit(f)} END"
                for f in content
                if f != "attributes"
            )
            + f", CASE WHEN {_attributes_differ('attributes', 'stored_attributes')} THEN 'attributes' END"
            + "], lambda f: f IS NOT NULL)"
        )
        # a row matches one stored record, unless the store holds ids that trim to the same
        # (stored before ids were trimmed): only then are its matches combined, the earliest
        # explaining a conflict (grouping every row costs a third of re-sending a stored file)
        one_each = _scalar(
            con,
            f"SELECT count(*) = 0 FROM hits WHERE stored > 1 OR {_has_edge_space('record_id')}",
        )
        pairs = f"""SELECT c._seq, {_same_content(content, "c", "s")} AS same, s.batch_id,
                s.source_dept AS stored_dept,
                c.source_dept IS DISTINCT FROM s.source_dept AS other_dept, {fields}
            FROM checked c JOIN (
                SELECT s.*, {"s.record_id" if one_each else _trimmed("s.record_id")} AS key
                FROM records s SEMI JOIN hits h ON h.record_id = s.record_id
            ) s ON s.key = c.record_id
            WHERE c.reason IS NULL"""
        explained = f"""SELECT _seq, same, batch_id, stored_dept, other_dept,
                CASE WHEN same THEN [] ELSE {changed} END AS changed
            FROM ({pairs}) p"""
        if one_each:
            con.execute(f"CREATE TEMP TABLE existing AS {explained}")
        else:
            con.execute(
                f"""CREATE TEMP TABLE existing AS
                SELECT _seq, bool_or(same) AS same, min(batch_id) AS batch_id,
                    arg_min(stored_dept, batch_id) AS stored_dept,
                    arg_min(other_dept, batch_id) AS other_dept,
                    arg_min(changed, batch_id) AS changed
                FROM ({explained}) e GROUP BY _seq"""
            )
        # record_id is the idempotency key across all departments: a clash with another
        # department's record is not a change to correct but an id to make unique
        con.execute(
            """UPDATE checked SET reason = 'record_id_conflict',
                message = CASE WHEN existing.other_dept
                    THEN format('record_id "{}" is already used by {}''s record (batch {}): record ids '
                                'must be unique across departments; prefix them with the department, '
                                'e.g. "{}-{}"', checked.record_id, existing.stored_dept,
                                existing.batch_id, checked.source_dept, checked.record_id)
                    WHEN list_has_any(existing.changed, ['uscc', 'category', 'event_date'])
                    THEN format('record_id "{}" is already stored with different content (batch {}; '
                                'changed: {}): a correction can only restate {}, so withdraw the '
                                'stored record and send this one under a new record_id',
                                checked.record_id, existing.batch_id,
                                array_to_string(existing.changed, ', '), ?)
                    ELSE format('record_id "{}" is already stored with different content (batch {}; '
                                'changed: {}); send a correction instead (credsup events)', checked.record_id,
                                existing.batch_id, array_to_string(existing.changed, ', '))
                END
            FROM existing WHERE NOT existing.same AND existing._seq = checked._seq""",
            [", ".join(CORRECTABLE[:-1]) + " or " + CORRECTABLE[-1]],
        )
    else:
        stored_struct = _content_struct(content, "s")
        # already stored: (1) the store's latest word, known by the row's own day, on the version
        # of that department date is the same (a back-fill of a version that first arrived late
        # takes its place by its date); or (2) the company's one version in the file is the same
        # as the version in force, and no stored version was known after it (an unchanged
        # registration sent again, which must not grow the store; a version sent with several
        # others is history, which only (1) can find stored)
        con.execute(
            f"""CREATE TEMP TABLE existing AS
            WITH stored AS (
                SELECT s.*, coalesce(s.source_recorded_date, s.recorded_date) AS v
                FROM entities s SEMI JOIN hits h ON h.uscc = s.uscc
            ), keys AS (  -- the versions the file states, also those refused for another fault
                SELECT uscc, count(DISTINCT _key) AS versions FROM checked WHERE {_STATED}
                GROUP BY uscc
            ), c AS (
                SELECT c.*, coalesce(c.source_recorded_date, c.recorded_date) AS v, k.versions
                FROM checked c JOIN keys k ON k.uscc = c.uscc WHERE c.reason IS NULL
            ), same_date AS (
                SELECT c._seq, arg_max({stored_struct}, struct_pack(d := s.recorded_date,
                    b := s.batch_id)) AS content, max(s.batch_id) AS batch_id
                FROM c JOIN stored s ON s.uscc = c.uscc AND s.v = c.v
                    AND s.recorded_date <= c.recorded_date
                GROUP BY c._seq
            ), in_force AS (
                SELECT c._seq, arg_max({stored_struct}, {version_order("s")}) AS content,
                    max(s.batch_id) AS batch_id, max(s.recorded_date) AS last_known
                FROM c JOIN stored s ON s.uscc = c.uscc WHERE c.versions = 1 GROUP BY c._seq
            )
            SELECT c._seq,
                coalesce(d.content IS NOT DISTINCT FROM {struct}, false)
                    OR coalesce(f.last_known <= c.recorded_date
                                AND f.content IS NOT DISTINCT FROM {struct}, false) AS same,
                coalesce(d.batch_id, f.batch_id) AS batch_id
            FROM c LEFT JOIN same_date d ON d._seq = c._seq LEFT JOIN in_force f ON f._seq = c._seq
            WHERE d._seq IS NOT NULL OR f._seq IS NOT NULL"""
        )


_STATED = (
    "reason IS NULL OR reason NOT IN ('missing_field', 'invalid_uscc', 'invalid_date', "
    "'future_date')"
)
"""SQL: a row of the file that states a version of an entity (its code and dates are sound), even
when it is refused for another fault."""


def _write_new_rows(
    con: duckdb.DuckDBPyConnection, batch: Any, ctx: _Context, result: IngestResult
) -> None:
    # the valid rows, and of them the late ones, in one scan
    valid, late, earliest = con.execute(
        "SELECT count(*), count(source_recorded_date), min(source_recorded_date) FROM checked "
        "WHERE reason IS NULL"
    ).fetchall()[0]
    # counted over rows still valid: identical repeats of a record_id that turned out to conflict
    # with the store were quarantined, all of them, after `dup` was made
    result.duplicates_in_file = _scalar(
        con,
        "SELECT count(*) FROM checked c JOIN dup d ON d._key = c._key "
        "WHERE c.reason IS NULL AND NOT d.conflict AND c._seq <> d.keep",
    )
    if _scalar(con, "SELECT (SELECT count(*) FROM dup) + (SELECT count(*) FROM existing)") == 0:
        new_rows = "FROM checked c WHERE c.reason IS NULL"  # the common case: nothing to skip
        result.already_stored = 0
    else:
        new_rows = """FROM checked c
            LEFT JOIN dup d ON d._key = c._key
            LEFT JOIN existing e ON e._seq = c._seq
            WHERE c.reason IS NULL AND (d._key IS NULL OR c._seq = d.keep)
                AND (e._seq IS NULL OR NOT e.same)"""
        if late:  # the late ones among the rows actually stored
            late, earliest = con.execute(
                f"SELECT count(*), min(c.source_recorded_date) {new_rows} "
                "AND c.source_recorded_date IS NOT NULL"
            ).fetchall()[0]
        result.already_stored = _scalar(
            con,
            "SELECT count(*) FROM existing e JOIN checked c ON c._seq = e._seq LEFT JOIN dup d "
            "ON d._key = c._key WHERE e.same AND (d._key IS NULL OR c._seq = d.keep)",
        )
    batch_id = _lit(batch.batch_id)
    if ctx.kind == "records":
        select = (
            f"SELECT c.record_id, c.uscc, c.category, c.event_date, c.recorded_date, c.source_dept, "
            f"c.severity, c.amount, c.attributes, {batch_id} AS batch_id, c.source_recorded_date "
            f"{new_rows}"
        )
        result.stored = batch.copy(con, "records", select)
    else:
        select = (
            f"SELECT c.uscc, c.name, c.industry, c.region, c.entity_type, c.registered_capital, "
            f"c.established_date, c.status, c.recorded_date, {batch_id} AS batch_id, "
            f"c.source_recorded_date {new_rows}"
        )
        entities = con.sql(select).to_arrow_table()
        batch.write_arrow("entities", entities)
        result.stored = entities.num_rows
    result.restamped = int(late)
    result.earliest_source_recorded = earliest.isoformat() if earliest else None
    if result.stored + result.already_stored + result.duplicates_in_file != valid:
        raise AssertionError(
            f"ingest accounting: {result.stored} stored + {result.already_stored} already stored "
            f"+ {result.duplicates_in_file} duplicates != {valid} valid rows"
        )


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0])


def _write_quarantine(
    con: duckdb.DuckDBPyConnection,
    batch: Any,
    ctx: _Context,
    result: IngestResult,
    unread: list[UnreadRow],
) -> None:
    if (
        not unread
        and ctx.mapping.unpivot is None
        and not _scalar(con, "SELECT count(*) FROM checked WHERE reason IS NOT NULL")
    ):
        return
    raw_cols = [c for c in con.sql("SELECT * FROM raw_input LIMIT 0").columns
                if c != "_row" and not c.startswith("__")]  # fmt: skip
    raw_json = (
        "to_json(struct_pack(" + ", ".join(f"{_ident(c)} := r.{_ident(c)}" for c in raw_cols) + "))"
    )
    rejected = (
        con.sql(
            f"""SELECT c._row AS row, c.reason, c.message, c.uscc, CAST({raw_json} AS VARCHAR) AS raw
        FROM (SELECT * FROM checked WHERE reason IS NOT NULL) c
        JOIN (SELECT * FROM raw_input WHERE _row IN (SELECT _row FROM checked WHERE reason IS NOT NULL)) r
        ON r._row = c._row ORDER BY c._seq"""
        )
        .to_arrow_table()
        .to_pylist()
    )
    if ctx.mapping.unpivot is not None:
        rejected += _empty_rows(con, ctx, raw_json)
    for r in rejected:
        if r["reason"] == "invalid_uscc":
            try:
                uscc.validate(r["uscc"])
                r["message"] = "code is not valid"
            except uscc.InvalidUSCC as exc:
                r["message"] = f"uscc {r['uscc']!r}: {exc.message}"
    for u in unread:
        rejected.append({"row": u.row, "reason": u.reason, "raw": u.raw, "message": u.message})
    if not rejected:
        return
    table = new_quarantine_rows(con, batch.batch_id, ctx.kind, ctx.source_file, ctx.source_dept,
                                rejected)  # fmt: skip
    result.already_quarantined = len(rejected) - table.num_rows
    result.quarantined = len(rejected)
    # rows that never reached the mapping: unreadable ones, and unpivoted rows without values
    result.rows_mapped += len(unread) + sum(1 for r in rejected if r["reason"] == "empty_row")
    reasons: dict[str, int] = {}
    for r in rejected:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    result.by_reason = dict(sorted(reasons.items()))
    batch.write_arrow("quarantine", table)


def new_quarantine_rows(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    kind: str,
    source_file: str,
    source_dept: str,
    rejected: list[dict[str, Any]],
) -> pa.Table:
    """The quarantine rows of `rejected` (each with row, reason, message, raw) that are not in
    the quarantine yet. The same rejected row of the same file (by name: the folder it was sent
    from does not matter) from the same department is quarantined once; another file's or
    department's is its own."""
    file_name = Path(source_file).name
    rows = [
        {
            "quarantine_id": hashlib.md5(
                f"{kind}\x1f{source_dept}\x1f{file_name}\x1f{r['reason']}\x1f{r['row']}"
                f"\x1f{r['raw']}".encode()
            ).hexdigest(),
            "batch_id": batch_id, "kind": kind, "source_file": source_file,
            "source_dept": source_dept, "row": r["row"], "reason": r["reason"],
            "message": r["message"], "raw": r["raw"],
        }
        for r in rejected
    ]  # fmt: skip
    table = pa.Table.from_pylist(rows, schema=QUARANTINE)
    con.register("fresh_quarantine", table)
    known_ids = {
        q for (q,) in con.execute(
            "SELECT quarantine_id FROM quarantine WHERE quarantine_id IN "
            "(SELECT quarantine_id FROM fresh_quarantine)"
        ).fetchall()
    }  # fmt: skip
    if not known_ids:
        return table
    return table.filter(pa.array([q not in known_ids for q in table["quarantine_id"].to_pylist()]))


def _empty_rows(
    con: duckdb.DuckDBPyConnection, ctx: _Context, raw_json: str
) -> list[dict[str, Any]]:
    unpivot = ctx.mapping.unpivot
    assert unpivot is not None
    none = " AND ".join(f"{_text(c)} IS NULL" for c in unpivot.columns)
    rows: list[dict[str, Any]] = (
        con.sql(
            f"""SELECT r._row AS row, 'empty_row' AS reason,
            'none of ' || {_lit(", ".join(unpivot.columns))} || ' has a value' AS message,
            NULL AS uscc, CAST({raw_json} AS VARCHAR) AS raw FROM raw_input r WHERE {none}"""
        )
        .to_arrow_table()
        .to_pylist()
    )
    return rows
