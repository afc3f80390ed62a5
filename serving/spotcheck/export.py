"""The spot-check list for regulators as JSON, and as CSV and Excel with Chinese headers (one
code for `GET /v1/spot-check-plans/{id}` and `credsup plan show`: `plan_list_bytes`), and the
inspector pool read from the files departments keep (CSV or Excel, English or Chinese headers).

Codes (统一社会信用代码, division codes, ids) always stay text: a spreadsheet that reads an
18-digit code as a number keeps only 15 significant digits and drops leading zeros.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from openpyxl.utils.datetime import to_excel

from records import uscc

COLUMN_NAMES: dict[str, str] = {
    "task_id": "任务编号",
    "plan_id": "计划编号",
    "visit_no": "联合检查序号",
    "uscc": "统一社会信用代码",
    "company_name": "企业名称",
    "region": "所属区域",
    "tier": "信用风险分类",
    "item_id": "检查事项编号",
    "item_name": "检查事项",
    "department": "实施部门",
    "inspectors": "执法检查人员",
    "inclusion_prob": "入选概率",
    "basis": "抽取方式",
    "due_date": "完成期限",
    "due_estimated": "完成期限为估算",
    "status": "状态",
    "result": "检查结果",
    "corrected": "结果已更正",
    "supplemented": "结果已补充",
    "objection_open": "异议处理中",
    "check_date": "检查日期",
    "not_inspected_reason": "未能检查原因",
}
"""Internal column name → the header regulators see; other columns keep their own name."""

DEPARTMENT_NAMES: dict[str, str] = {
    "samr": "市场监管局",
    "fire": "消防救援机构",
    "emergency": "应急管理局",
    "ecology": "生态环境局",
    "health": "卫生健康委",
    "tax": "税务局",
    "hrss": "人力资源社会保障局",
    "transport": "交通运输局",
    "culture": "文化和旅游局",
    "education": "教育局",
    "housing": "住房城乡建设局",
    "agriculture": "农业农村局",
    "miit": "工业和信息化局",
    "mca": "民政局",
}
"""Department code → Chinese name; unknown codes are shown as they are."""

DEPARTMENT_ALIASES: dict[str, str] = {
    "市场监督管理局": "samr", "市场监管部门": "samr", "市场监督管理部门": "samr",
    "市场监管总局": "samr", "国家市场监督管理总局": "samr", "工商行政管理局": "samr",
    "消防救援支队": "fire", "消防救援大队": "fire", "消防救援局": "fire", "消防救援总队": "fire",
    "应急管理部门": "emergency", "生态环境部门": "ecology", "环境保护局": "ecology",
    "环保局": "ecology", "卫生健康委员会": "health", "卫健委": "health", "卫生健康局": "health",
    "人力资源和社会保障局": "hrss", "人社局": "hrss", "文化广电和旅游局": "culture",
    "文旅局": "culture", "住房和城乡建设局": "housing", "住建局": "housing",
    "工信局": "miit",
}  # fmt: skip
"""Other names departments go by (full names, older names, short forms) → code."""


def department_code(text: str, known: Iterable[str] = ()) -> str | None:
    """The department a cell or an option names, as its code: a code of `DEPARTMENT_NAMES` or
    of `known` (the check-item list's departments) in any case (`SAMR`), a Chinese name
    (`DEPARTMENT_NAMES`, `DEPARTMENT_ALIASES`), also after a place (郑州市市场监督管理局);
    None if it names no department. One mapping for the inspector file, `POST /v1/inspectors`
    and every filter by department."""
    text = text.strip()
    codes = {c.casefold(): c for c in (*DEPARTMENT_NAMES, *known)}
    if text.casefold() in codes:
        return codes[text.casefold()]
    names = {**{n: c for c, n in DEPARTMENT_NAMES.items()}, **DEPARTMENT_ALIASES}
    if text in names:
        return names[text]
    # a place before the name: the longest name it ends with
    ending = sorted((n for n in names if text.endswith(n)), key=len, reverse=True)
    return names[ending[0]] if ending else None


def known_departments(known: Iterable[str] = ()) -> str:
    """The departments a refusal offers: each code with its Chinese name."""
    return ", ".join(
        f"{c} {DEPARTMENT_NAMES[c]}" if c in DEPARTMENT_NAMES else c
        for c in sorted({*DEPARTMENT_NAMES, *known})
    )


VALUE_NAMES: dict[str, dict[str, str]] = {
    "basis": {"random": "随机抽取", "triggered": "触发检查"},
    "status": {
        "open": "待检查",
        "done": "已完成",
        "done_late": "逾期完成",
        "overdue": "已逾期",
        "cancelled": "已取消",
    },
    "result": {
        "pass": "未发现问题",
        "problem": "发现问题",
        "serious": "发现严重问题",
        "not_inspected": "未能检查",
    },
    "not_inspected_reason": {
        "unreachable": "通过登记的住所无法联系",
        "deregistered": "已注销",
        "ceased_trading": "已停业",
        "other": "其他原因",
    },
    "department": DEPARTMENT_NAMES,
}
"""Coded values shown in Chinese (per column); values not listed are shown as they are."""

YES_NO_COLUMNS = frozenset({"corrected", "supplemented", "objection_open", "due_estimated"})
"""Flags shown as 是/否 in CSV and Excel (JSON keeps true/false)."""

TEXT_COLUMNS = frozenset(
    {"task_id", "plan_id", "uscc", "region", "item_id", "inspectors", "inspector_id", "area"}
)
"""Codes: written as text cells even if the frame holds them as numbers."""

DATE_COLUMNS = frozenset({"due_date", "check_date"})
"""Written as Excel dates (parsed if held as ISO text)."""

EXCEL_MAX_ROWS = 1_048_576
XLSX_CHUNK_ROWS = 5_000
"""Rows serialised per write into the sheet stream."""
XLSX_COMPRESSION = 3
"""zlib level of the sheet: 100k list rows took 1.2 s to 10.7 MB, against 2.7 s to 9.3 MB at
zipfile's default of 6."""
WIDTH_SAMPLE_ROWS = 200
"""Rows read to size a column."""
SHEET_PATH = "xl/worksheets/sheet1.xml"
CORE_PATH = "docProps/core.xml"
"""The workbook's document properties (its creation and modification times)."""

_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
"""Control characters an xlsx file cannot hold (openpyxl refuses them)."""


ListFormat = Literal["json", "csv", "xlsx"]
"""The formats of a plan's list."""

LIST_MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def plan_list_bytes(plan: Mapping[str, Any], frame: pd.DataFrame, format: ListFormat) -> bytes:
    """A plan's list (`plan` its stored row, `frame` its tasks as `plans.plan_list` gives them)
    in a format, byte for byte what the API serves and `credsup plan show` writes.

    JSON: the plan's id, name, dates and list hash with its tasks (dates as dates, numbers as
    stored). CSV: UTF-8 with a byte-order mark and Chinese headers (`to_csv_bytes`). Excel: a
    sheet titled with the plan's name (`to_xlsx_bytes`), dated by the plan's creation, so that
    the same list always gives the same bytes.
    """
    if format == "csv":
        return to_csv_bytes(frame)
    if format == "xlsx":
        created = plan["created_at"]
        if created.tzinfo is not None:  # PostgreSQL's; SQLite's is UTC without its zone
            created = created.astimezone(UTC).replace(tzinfo=None)
        return to_xlsx_bytes(frame, title=f"{plan['name']}（{plan['id']}）", created=created)
    if format == "json":
        body = {
            "plan_id": plan["id"], "name": plan["name"],
            "start_date": plan["start_date"].isoformat(), "due_date": plan["due_date"].isoformat(),
            "list_sha256": plan["list_sha256"], "tasks": list_records(frame),
        }  # fmt: skip
        return json.dumps(body, ensure_ascii=False, default=_json_scalar).encode()
    raise ValueError(f"unknown list format {format!r}: json, csv or xlsx")


def list_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as JSON-ready dicts: dates as ISO dates (with the time if not midnight),
    numbers as Python numbers at full precision (NaN: null), missing values as None."""
    columns = [_json_column(frame.iloc[:, k], str(c)) for k, c in enumerate(frame.columns)]
    names = [str(c) for c in frame.columns]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _json_column(values: pd.Series, column: str) -> list[Any]:
    missing = values.isna().tolist()
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
        raw = values.astype(object).tolist()  # Python ints, floats and bools
    else:
        raw = values.tolist()
    if pd.api.types.is_datetime64_any_dtype(values.dtype) or column in DATE_COLUMNS:
        # a list has few distinct dates and many rows
        shown = {v: _json_date(v) for v in {v for v, m in zip(raw, missing, strict=True) if not m}}
        raw = [shown.get(v) for v in raw]
    return [None if m else v for v, m in zip(raw, missing, strict=True)]


def _json_date(value: object) -> object:
    """A date as ISO text, the day alone if at midnight; anything else as it is."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        if value.tzinfo is None and value.time() == datetime.min.time():
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _json_scalar(value: object) -> object:
    """`json.dumps`' fallback: numpy scalars in an object column as Python ones."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


SHOWN_DIGITS = {"inclusion_prob": 4}
"""Numbers shown to regulators rounded (CSV and Excel: 0.5349, not 0.5349301397205588); JSON
keeps them as stored."""


def to_chinese(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with coded values (`VALUE_NAMES`) and headers (`COLUMN_NAMES`) in Chinese and
    numbers rounded as `SHOWN_DIGITS` says."""
    out = frame.copy()
    for column, digits in SHOWN_DIGITS.items():
        if column in out.columns and pd.api.types.is_float_dtype(out[column].dtype):
            out[column] = out[column].round(digits)
    for column, names in VALUE_NAMES.items():
        if column in out.columns:
            out[column] = _translate(out[column], names)
    if {"result", "not_inspected_reason"} <= set(out.columns):
        # a check not made reads 未能检查（通过登记的住所无法联系）
        why = out["not_inspected_reason"]
        out["result"] = out["result"].where(
            why.isna(), out["result"].astype(str) + "（" + why.astype(str) + "）"
        )
    for column in YES_NO_COLUMNS & set(out.columns):
        out[column] = out[column].map({True: "是", False: "否"}).astype(object)
    return out.rename(columns=lambda c: COLUMN_NAMES.get(str(c), c))


def _translate(values: pd.Series, names: Mapping[str, str]) -> pd.Series:
    # translate the distinct values only: a list has few of them and many rows
    codes, distinct = pd.factorize(values)
    shown = [names.get(v, v) if isinstance(v, str) else v for v in distinct]
    out = pd.Series(np.array([*shown, None], dtype=object)[codes], index=values.index)
    return out.astype(values.dtype) if pd.api.types.is_string_dtype(values.dtype) else out


def to_csv_bytes(frame: pd.DataFrame, chinese: bool = True) -> bytes:
    """The list as UTF-8 CSV with a byte-order mark (without it Excel reads Chinese as GBK).

    Values are written as they are (text quoted, dates ISO): a reader that wants codes as text
    (pandas with `dtype=str`) gets them intact. Excel itself turns long digit strings into
    numbers when it opens a CSV; give Excel users `to_xlsx_bytes` instead. Text that a
    spreadsheet would run as a formula (starting with = + - @, tab or CR: a company name or a
    finding typed by anyone) gets a leading apostrophe (OWASP "CSV injection"). Written by
    Arrow: pandas took 3 s for 100k rows, Arrow 0.2 s.
    """
    out = to_chinese(frame) if chinese else frame
    table = pa.Table.from_arrays(
        [_csv_column(out.iloc[:, k]) for k in range(out.shape[1])],
        names=[str(c) for c in out.columns],
    )
    sink = io.BytesIO()
    sink.write("\ufeff".encode())
    pacsv.write_csv(table, sink)
    return sink.getvalue()


def _csv_column(values: pd.Series) -> pa.Array:
    """A column as Arrow for CSV: dates without a time as dates, mixed objects as text."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_localize(None)
        present = values.dropna()
        midnight = bool((present == present.dt.normalize()).all())
        return pa.array(values.dt.strftime("%Y-%m-%d" if midnight else "%Y-%m-%d %H:%M:%S"))
    try:
        array = _flat(pa.array(values, from_pandas=True))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = _as_text_array(values)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        risky = pc.match_substring_regex(array, r"^[=+\-@\t\r]")
        quoted = pc.binary_join_element_wise(
            pa.scalar("'", array.type), array, pa.scalar("", array.type)
        )
        array = pc.if_else(risky, quoted, array)
    return array


def to_xlsx_bytes(
    frame: pd.DataFrame,
    sheet: str = "抽查名单",
    title: str | None = None,
    chinese: bool = True,
    created: datetime | None = None,
) -> bytes:
    """The list as an Excel workbook: frozen bold header, filter, codes as text, dates as dates.

    openpyxl (write-only mode) writes the workbook, styles, widths, title and header; the data
    rows are built column-wise in Arrow and streamed into its sheet as plain SpreadsheetML.
    openpyxl without lxml (no dependency here) serialises a cell in ~27 µs: 100k rows of 17
    columns took 47 s through `ws.append`. With `created` (UTC, no zone) the workbook's dates
    (its properties and its zip entries) are that time, not now: the same list and time give
    the same bytes.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    from openpyxl.xml.functions import tostring

    header_row = 2 if title else 1
    if len(sheet) > 31:  # Excel refuses to open a workbook with a longer sheet name
        raise ValueError(f"sheet name {sheet!r} longer than 31 characters")
    if len(frame) + header_row > EXCEL_MAX_ROWS:
        raise ValueError(f"{len(frame)} rows do not fit in one Excel sheet")
    shown = to_chinese(frame) if chinese else frame
    headers = [_text(str(c)) for c in shown.columns]
    letters = [get_column_letter(k) for k in range(1, len(headers) + 1)]

    book = Workbook(write_only=True)
    ws = book.create_sheet(sheet)
    styles = _Styles(date=_style_id(ws, "yyyy-mm-dd"), datetime=_style_id(ws, "yyyy-mm-dd hh:mm"))
    # cell types follow the internal column name; values and headers are the shown ones
    cells = [_cells(shown.iloc[:, k], str(c), styles) for k, c in enumerate(frame.columns)]
    for k, (letter, header) in enumerate(zip(letters, headers, strict=True)):
        ws.column_dimensions[letter].width = _width(header, shown.iloc[:, k])
    ws.freeze_panes = f"A{header_row + 1}"
    if headers:
        ws.auto_filter.ref = f"A{header_row}:{letters[-1]}{header_row + len(frame)}"
    if title:
        cell = WriteOnlyCell(ws, value=_text(title))
        cell.data_type = "s"
        cell.font = Font(bold=True, size=14)
        ws.append([cell])
    bold = Font(bold=True)
    header_cells = []
    for header in headers:
        cell = WriteOnlyCell(ws, value=header)
        cell.data_type = "s"  # a header starting with '=' is no formula either
        cell.font = bold
        header_cells.append(cell)
    ws.append(header_cells)
    skeleton = io.BytesIO()
    book.save(skeleton)  # dated now by openpyxl: the properties are replaced when `created`
    rows = _rows_xml(cells, letters, header_row + 1, len(frame))
    if created is None:
        return _with_rows(skeleton.getvalue(), SHEET_PATH, rows)
    book.properties.created = book.properties.modified = created
    core = {CORE_PATH: tostring(book.properties.to_tree())}
    return _with_rows(skeleton.getvalue(), SHEET_PATH, rows, core, created)


@dataclass(frozen=True)
class _Styles:
    """Cell-style indices registered in the workbook."""

    date: int
    datetime: int


def _style_id(ws: Any, number_format: str) -> int:
    """Register a number format in the workbook's styles and return its cell-style index."""
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(ws)
    cell.number_format = number_format
    return int(cell.style_id)


def _cells(values: pd.Series, column: str, styles: _Styles) -> pa.Array:
    """Each value's cell after its reference (` t="b"><v>1</v></c>`); null: an empty cell.

    Dates (datetime columns and `DATE_COLUMNS`) become date cells, codes (`TEXT_COLUMNS`) and
    anything not numeric text cells (never formulas), numbers and booleans stay so.
    """
    dtype = values.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype) or column in DATE_COLUMNS:
        distinct = {v: _date_cell(v, styles) for v in values.dropna().unique()}
        return pa.array(values.map(distinct).where(values.notna(), None), pa.string())
    if pd.api.types.is_bool_dtype(dtype) and column not in TEXT_COLUMNS:
        flags = pc.cast(_flat(pa.array(values, pa.bool_(), from_pandas=True)), pa.int8())
        return _join(' t="b"><v>', pc.cast(flags, pa.string()), "</v></c>")
    if pd.api.types.is_numeric_dtype(dtype) and column not in TEXT_COLUMNS:
        numbers = _flat(pa.array(values, from_pandas=True))
        if pa.types.is_floating(numbers.type):  # NaN and ±inf have no cell
            numbers = pc.if_else(pc.is_finite(numbers), numbers, None)
        return _join("><v>", pc.cast(numbers, pa.string()), "</v></c>")
    return _text_cells(_as_text_array(values))


def _flat(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array (Arrow-backed pandas columns convert to chunked arrays)."""
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _as_text_array(values: pd.Series) -> pa.Array:
    """The values as Arrow text; values that are not text (codes held as numbers) via `_as_text`."""
    if not pd.api.types.is_numeric_dtype(values.dtype):
        try:
            return _flat(pa.array(values, pa.string(), from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    raw = values.astype(object).tolist()
    missing = values.isna().tolist()
    return pa.array([None if m else _as_text(v) for v, m in zip(raw, missing, strict=True)])


def _text_cells(text: pa.Array) -> pa.Array:
    """Inline-string cells of the text (escaped, control characters dropped, spaces kept)."""
    # built once per distinct value: most columns of a list repeat a few values
    encoded = pc.dictionary_encode(text)
    distinct = encoded.dictionary
    if pc.any(pc.match_substring_regex(distinct, _ILLEGAL_XML.pattern)).as_py():
        distinct = pc.replace_substring_regex(distinct, _ILLEGAL_XML.pattern, "")
    escaped = distinct
    # a bare CR would be read back as LF (XML end-of-line handling)
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("\r", "&#13;")):
        escaped = pc.replace_substring(escaped, char, entity)
    # Excel drops leading and trailing spaces unless told to keep them
    padded = pc.not_equal(pc.utf8_trim_whitespace(distinct), distinct)
    opening = pc.if_else(
        padded, ' t="inlineStr"><is><t xml:space="preserve">', ' t="inlineStr"><is><t>'
    )
    return pc.take(_join(opening, escaped, "</t></is></c>"), encoded.indices)


def _join(*parts: Any) -> pa.Array:
    """Element-wise concatenation; null if any part is null."""
    return pc.binary_join_element_wise(*parts, "")


def _date_cell(value: object, styles: _Styles) -> str:
    """A date cell (date and time if not midnight); text that is no date stays text."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return str(_text_cells(pa.array([value]))[0])
    if isinstance(value, datetime):
        value = value.replace(tzinfo=None)  # Excel has no time zones
        if value.time() != datetime.min.time():
            return f' s="{styles.datetime}"><v>{to_excel(value)!r}</v></c>'
        value = value.date()
    if isinstance(value, date):
        return f' s="{styles.date}"><v>{int(to_excel(value))}</v></c>'
    return str(_text_cells(pa.array([_as_text(value)]))[0])


def _rows_xml(cells: list[pa.Array], letters: list[str], first_row: int, n: int) -> Iterator[bytes]:
    """The `<row>` elements of the data, in UTF-8 chunks of `XLSX_CHUNK_ROWS` rows."""
    for start in range(0, n, XLSX_CHUNK_ROWS):
        stop = min(start + XLSX_CHUNK_ROWS, n)
        numbers = pc.cast(pa.array(np.arange(first_row + start, first_row + stop)), pa.string())
        parts: list[Any] = ['<row r="', numbers, '">']
        for letter, column in zip(letters, cells, strict=True):
            parts.append(_join(f'<c r="{letter}', numbers, '"', column.slice(start, stop - start)))
        parts.append("</row>")
        rows = pc.binary_join_element_wise(*parts, "", null_handling="replace", null_replacement="")
        yield _concatenated(rows)


def _concatenated(strings: pa.Array | pa.ChunkedArray) -> bytes:
    """All values of a string array (without nulls) back to back, as UTF-8."""
    strings = _flat(strings)
    one_list = pa.ListArray.from_arrays(pa.array([0, len(strings)], pa.int32()), strings)
    joined = pc.binary_join(one_list, "")[0]
    return bytes(pc.cast(joined, pa.binary()).as_buffer().to_pybytes())


def _with_rows(
    skeleton: bytes,
    sheet_path: str,
    rows: Iterable[bytes],
    replaced: Mapping[str, bytes] | None = None,
    dated: datetime | None = None,
) -> bytes:
    """The skeleton workbook with the rows streamed in before its sheet's `</sheetData>`, the
    `replaced` entries' contents replaced, and every entry dated `dated` if given."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(skeleton)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=XLSX_COMPRESSION) as target,
    ):
        for info in source.infolist():
            data = (replaced or {}).get(info.filename) or source.read(info)
            if dated is not None:
                info.date_time = dated.timetuple()[:6]
            if info.filename != sheet_path:
                target.writestr(info, data)
                continue
            head, end, tail = data.rpartition(b"</sheetData>")
            if not end:
                raise RuntimeError(f"no </sheetData> in openpyxl's {sheet_path}")
            entry = zipfile.ZipInfo(sheet_path, info.date_time)
            entry.compress_type = zipfile.ZIP_DEFLATED
            # what ZipFile.open(name, "w") sets from the archive's level (public from 3.13)
            entry._compresslevel = XLSX_COMPRESSION  # type: ignore[attr-defined]
            with target.open(entry, "w") as sink:
                sink.write(head)
                for chunk in rows:
                    sink.write(chunk)
                sink.write(end + tail)
    return out.getvalue()


def _text(value: str) -> str:
    return _ILLEGAL_XML.sub("", value)


def _as_text(value: object) -> str:
    """A value of a text cell (a code held as a number too: 1.0 → '1')."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _width(header: str, values: pd.Series) -> float:
    """Column width in Excel units from the header and the first rows (CJK counts double)."""
    sample = [header] + [_shown(v) for v in values.head(WIDTH_SAMPLE_ROWS).dropna().tolist()]
    widest = max(_display_width(text) for text in sample)
    return float(min(max(widest + 2, 8), 60))


def _shown(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _display_width(text: str) -> int:
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)


# ---- the inspector pool -----------------------------------------------------------------------

INSPECTOR_COLUMNS = ("inspector_id", "name", "department", "area", "items", "active", "conflicts")

INSPECTOR_HEADERS: dict[str, tuple[str, ...]] = {
    "inspector_id": ("inspector_id", "执法人员编号"),
    "name": ("name", "姓名"),
    "department": ("department", "所属部门"),
    "area": ("area", "区域"),
    "items": ("items", "检查事项", "资格事项"),
    "active": ("active", "在岗", "状态"),
    "conflicts": ("conflicts", "回避企业"),
}
"""Accepted headers of each column of an inspector file (English ones case-insensitive)."""

ACTIVE_VALUES: dict[str, bool] = {
    "true": True, "1": True, "yes": True, "是": True, "在岗": True, "在职": True,
    "false": False, "0": False, "no": False, "否": False, "离岗": False, "离职": False,
}  # fmt: skip

LIST_SEPARATORS = re.compile(r"[;；,，、]")

MAX_REPORTED_ROWS = 20
REQUIRED_HEADERS = ("inspector_id", "department")


HEADER_SEARCH_ROWS = 5
"""The header may sit below a few title rows."""


class InspectorFileError(ValueError):
    """An inspector file with bad rows; `problems` holds (row, what is wrong) for each one."""

    def __init__(self, message: str, problems: list[tuple[int, str]]) -> None:
        super().__init__(message)
        self.problems = problems


def read_inspectors(path: Path, encoding: str | None = None) -> pd.DataFrame:
    """The inspector pool (执法检查人员名录库) from a CSV or Excel (.xlsx) file.

    Returns columns `INSPECTOR_COLUMNS`: items and conflicts as tuples of text, active as bool
    (all active without the column), department names and codes as codes (`department_code`),
    conflict codes validated and compacted. Every bad row is reported in one
    `InspectorFileError`, by the row number a spreadsheet shows (a CSV's line number). A CSV is
    read as UTF-8, else as GB18030 (what Chinese Excel saves), unless `encoding` is given. The
    index is each inspector's row number, for the checks against the database to name the row.
    Messages do not name the file: the caller does.
    """
    records = _read_records(path, encoding)
    header_row, columns = _find_header(path, records)
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    out: dict[str, list[Any]] = {c: [] for c in INSPECTOR_COLUMNS}
    kept: list[int] = []
    for row, values in records:
        if row <= header_row:
            continue
        if len(values) > len(columns) and any(v.strip() for v in values[len(columns) :]):
            problems.append((row, f"{len(values)} values for {len(columns)} headers"))
            continue
        cell = {
            name: values[k].strip() if k < len(values) else ""
            for k, name in enumerate(columns)
            if name is not None
        }
        if not any(cell.values()):
            continue
        wrong: list[str] = []
        inspector_id = cell["inspector_id"]
        if not inspector_id:
            wrong.append("missing inspector_id (执法人员编号)")
        elif inspector_id in seen:
            wrong.append(f"inspector_id {inspector_id} already on row {seen[inspector_id]}")
        else:
            seen[inspector_id] = row
        department = cell["department"]
        if not department:
            wrong.append("missing department (所属部门)")
        area = cell.get("area", "")
        if area and not (area.isascii() and area.isdigit() and len(area) <= 6):
            wrong.append(f"area {area!r} is not a division code or its prefix (up to 6 digits)")
        active = True
        if "active" in cell:
            flag = ACTIVE_VALUES.get(cell["active"].lower())
            if flag is None:
                wrong.append(
                    f"active value {cell['active']!r} unknown (true/false/1/0/是/否/在岗/离岗)"
                    if cell["active"]
                    else "missing active (true/false/1/0/是/否/在岗/离岗)"
                )
            else:
                active = flag
        conflicts: list[str] = []
        for code in _split(cell.get("conflicts", "")):
            try:
                conflicts.append(uscc.validate(code))
            except uscc.InvalidUSCC as exc:
                wrong.append(f"conflict code {code!r} invalid: {exc.message}")
        if wrong:
            problems.append((row, "; ".join(wrong)))
            continue
        kept.append(row)
        out["inspector_id"].append(inspector_id)
        out["name"].append(cell.get("name", ""))
        # a known name or code as its code; the caller refuses one that names no department
        out["department"].append(department_code(department) or department)
        out["area"].append(area)
        out["items"].append(tuple(dict.fromkeys(_split(cell.get("items", "")))))
        out["active"].append(active)
        out["conflicts"].append(tuple(dict.fromkeys(conflicts)))

    if problems:
        shown = "\n".join(f"  row {r}: {p}" for r, p in problems[:MAX_REPORTED_ROWS])
        more = len(problems) - MAX_REPORTED_ROWS
        tail = f"\n  … and {more} more" if more > 0 else ""
        # the caller names the file
        rows = f"{len(problems)} bad row{'s' if len(problems) > 1 else ''}"
        raise InspectorFileError(f"{rows}:\n{shown}{tail}", problems)
    frame = pd.DataFrame(
        {
            "inspector_id": pd.Series(out["inspector_id"], dtype="string"),
            "name": pd.Series(out["name"], dtype="string"),
            "department": pd.Series(out["department"], dtype="string"),
            "area": pd.Series(out["area"], dtype="string"),
            "items": pd.Series(out["items"], dtype=object),
            "active": pd.Series(out["active"], dtype=bool),
            "conflicts": pd.Series(out["conflicts"], dtype=object),
        }
    )
    frame.index = pd.Index(kept, dtype="int64", name="row")
    return frame


def _read_records(path: Path, encoding: str | None) -> list[tuple[int, list[str]]]:
    """(row number, cell texts) of every row of the file's first sheet or of the CSV."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return _read_sheet(path)
    if suffix not in (".csv", ".txt"):
        raise ValueError(f"unsupported file type {suffix!r} (csv or xlsx)")
    raw = path.read_bytes()
    text: str | None = None
    for enc in [encoding] if encoding else ["utf-8-sig", "gb18030"]:
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    if text is None:
        raise ValueError(f"cannot decode the file as {encoding or 'UTF-8 or GB18030'}")
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, list[str]]] = []
    line = 1  # a record that spans lines (a quoted line break) is named by its first line
    for values in reader:
        records.append((line, values))
        line = reader.line_num + 1
    return records


def _read_sheet(path: Path) -> list[tuple[int, list[str]]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a file that is no workbook
        raise ValueError(f"cannot read the workbook: {exc}") from exc
    try:
        rows = book.worksheets[0].iter_rows(values_only=True)
        return [(k, [_cell_text(v) for v in values]) for k, values in enumerate(rows, start=1)]
    finally:
        book.close()


def _cell_text(value: object) -> str:
    """A spreadsheet cell as the text a person typed (a number 1001.0 as '1001')."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else str(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _find_header(path: Path, records: list[tuple[int, list[str]]]) -> tuple[int, list[str | None]]:
    """The header's row number and our column name at each position (None: not ours)."""
    for row, values in records[:HEADER_SEARCH_ROWS]:
        columns = [_column_of(v) for v in values]
        if not any(columns):
            continue  # a title row above the header
        for name in set(columns) - {None}:
            same = [values[k] for k, c in enumerate(columns) if c == name]
            if len(same) > 1:
                raise ValueError(f"headers {same} all give {name}")
        missing = [c for c in REQUIRED_HEADERS if c not in columns]
        if missing:
            wanted = "; ".join(f"{c}: {' / '.join(INSPECTOR_HEADERS[c])}" for c in missing)
            raise ValueError(f"row {row} lacks the columns ({wanted})")
        return row, columns
    if not any(any(v.strip() for v in values) for _, values in records):
        raise ValueError("the file is empty: no inspector header and no rows")
    found = records[0][1]
    raise ValueError(f"no inspector header in the first rows; found {found}")


def _column_of(header: str) -> str | None:
    key = header.strip().lstrip("\ufeff")
    for column, accepted in INSPECTOR_HEADERS.items():
        if key in accepted or key.lower() in accepted:
            return column
    return None


def _split(text: str) -> list[str]:
    return [part.strip() for part in LIST_SEPARATORS.split(text) if part.strip()]
