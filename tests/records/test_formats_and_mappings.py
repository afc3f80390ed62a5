"""Excel, Parquet and department-specific CSV exports through declarative mappings."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from cli.main import app
from records import ingest
from records.ingest import IngestError, ingest_file, read_input
from records.mapping import Mapping, load_mapping, packaged_mappings
from records.schema import RECORD_COLUMNS, RECORDS
from records.store import Store
from tests.records.factory import TODAY, penalty, valid_rows, write_csv

CODE = "91110000600037341L"


def test_excel_with_typed_cells(store: Store, tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    ws = book.active
    assert ws is not None
    ws.append(
        ["record_id", "uscc", "category", "event_date", "recorded_date", "severity", "amount"]
    )
    ws.append(
        ["x1", CODE, "admin_penalty", datetime(2024, 3, 1), date(2024, 3, 5), "serious", 20000]
    )
    ws.append(["x2", CODE, "admin_penalty", "2024/03/02", "2024-03-06", "minor", 12.5])
    ws.append([None, None, None, None, None, None, None])  # blank line: not a record
    ws.append(["x3", CODE, "admin_penalty", "not a date", "2024-03-06", "minor", None])
    path = tmp_path / "dept.xlsx"
    book.save(path)
    result = ingest_file(store, path, "records", "samr", today=TODAY)
    assert (result.stored, result.quarantined) == (2, 1)
    assert result.by_reason == {"invalid_date": 1}
    # the row is numbered by its place in the sheet (Excel shows it as row 5: header + 4)
    assert [q["row"] for q in store.read("quarantine").to_pylist()] == [4]
    rows = {r["record_id"]: r for r in store.read("records").to_pylist()}
    assert rows["x1"]["event_date"] == date(2024, 3, 1) and rows["x1"]["amount"] == 20000.0
    assert rows["x2"]["event_date"] == date(2024, 3, 2) and rows["x2"]["amount"] == 12.5
    assert rows["x1"]["source_dept"] == "samr"


def test_parquet_with_typed_columns(store: Store, tmp_path: Path) -> None:
    table = pa.table(
        {
            "record_id": ["p1", "p2"],
            "uscc": [CODE, CODE],
            "category": ["complaint", "honor"],
            "event_date": pa.array([date(2023, 1, 1), date(2023, 2, 1)], pa.date32()),
            "severity": ["verified", "national"],
            "amount": [300.0, None],
        }
    )
    path = tmp_path / "dept.parquet"
    pq.write_table(table, path)
    result = ingest_file(store, path, "records", "12315", today=TODAY)
    assert (result.stored, result.quarantined) == (2, 0)
    got = {r["record_id"]: r for r in store.read("records").to_pylist()}
    assert got["p1"]["amount"] == 300.0 and got["p2"]["amount"] is None
    # no recorded_date column: the platform learned them on the day of ingestion
    assert got["p1"]["recorded_date"] == TODAY


MAPPING = """
kind: records
encoding: gbk
date_formats: ["%Y年%m月%d日", "%Y-%m-%d"]
fields:
  record_id: {column: 决定书文号}
  uscc: {column: 统一社会信用代码}
  category: {value: admin_penalty}
  event_date: {column: 处罚决定日期}
  recorded_date: {column: 公示日期}
  severity: {column: 处罚类别, map: {警告: minor, 罚款: general, 吊销许可证: serious}}
  amount: {column: 罚款金额（万元）, scale: 10000}
attributes:
  legal_basis: {column: 处罚依据}
  penalty_types: {column: 处罚类别}
"""


def test_a_department_export_needs_only_a_mapping(store: Store, tmp_path: Path) -> None:
    mapping_file = tmp_path / "penalties.yaml"
    mapping_file.write_text(MAPPING, encoding="utf-8")
    export = tmp_path / "penalties.csv"
    export.write_text(
        "决定书文号,统一社会信用代码,处罚决定日期,公示日期,处罚类别,罚款金额（万元）,处罚依据\n"
        f"郑市监罚〔2024〕1号,{CODE},2024年1月5日,2024年1月12日,罚款,1.5,《食品安全法》第一百二十四条\n"
        "郑市监罚〔2024〕2号,9111 0000 6000 3734 1L,2024年2月5日,2024年2月8日,"
        "警告,,《产品质量法》\n"
        f"郑市监罚〔2024〕3号,{CODE},2024年3月5日,2024年3月9日,没收,,《广告法》\n",
        encoding="gbk",
    )
    result = ingest_file(
        store, export, "records", "zz-samr", mapping=mapping_file, today=TODAY, history=True
    )
    assert (result.stored, result.quarantined) == (2, 1)
    assert result.by_reason == {"severity_not_allowed": 1}  # 没收 is not in the map
    rows = {r["record_id"]: r for r in store.read("records").to_pylist()}
    first = rows["郑市监罚〔2024〕1号"]
    assert first["amount"] == 15000.0 and first["severity"] == "general"
    assert first["event_date"] == date(2024, 1, 5) and first["recorded_date"] == date(2024, 1, 12)
    assert json.loads(first["attributes"])["legal_basis"] == "《食品安全法》第一百二十四条"
    assert rows["郑市监罚〔2024〕2号"]["uscc"] == CODE  # spaces removed
    q = store.read("quarantine").to_pylist()[0]
    assert 'severity "没收" is not allowed for admin_penalty' in q["message"]
    assert json.loads(q["raw"])["处罚类别"] == "没收"


def test_missing_source_column_is_a_file_error(store: Store, tmp_path: Path) -> None:
    mapping = Mapping.model_validate(
        {"fields": {"record_id": {"column": "编号"}, "uscc": {"column": "代码"},
                    "category": {"value": "news"}, "event_date": {"column": "日期"}}}
    )  # fmt: skip
    path = write_csv(tmp_path / "a.csv", valid_rows(3))
    with pytest.raises(IngestError, match="missing column\\(s\\) 代码, 日期, 编号"):
        ingest_file(store, path, "records", "x", mapping=mapping, today=TODAY)
    assert store.log() == []


def test_mapping_validation_names_the_problem() -> None:
    with pytest.raises(ValidationError, match="give exactly one of"):
        Mapping.model_validate({"fields": {"uscc": {"column": "a", "value": "b"}}})
    with pytest.raises(ValidationError, match="unknown records fields \\['colour'\\]"):
        Mapping.model_validate({"fields": {"colour": {"value": "red"}}})
    with pytest.raises(ValidationError, match="derive_uscc needs"):
        Mapping.model_validate({"fields": {"uscc": {"derive_uscc": "id"}}})
    with pytest.raises(FileNotFoundError, match="packaged mappings: bdci-annual-report"):
        load_mapping("no-such-mapping")


def test_packaged_mappings_load() -> None:
    names = packaged_mappings()
    assert {"bdci-news", "bdci-tax", "boston-inspections", "bdci-entities"} <= set(names)
    for name in names:
        load_mapping(name)


def test_malformed_lines_are_quarantined_not_lost(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", valid_rows(5))
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("only,three,fields\n")
    result = ingest_file(store, path, "records", "samr", today=TODAY)
    assert (result.stored, result.quarantined, result.rows_read) == (5, 1, 6)
    q = store.read("quarantine").to_pylist()[0]
    assert q["reason"] == "malformed_row" and "only,three,fields" in q["message"]


def _with_line(path: Path, row: int, change: Callable[[str], str]) -> list[str]:
    """Change data row `row` (1-based) of a CSV file; returns the file's lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[row] = change(lines[row])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def test_a_quote_never_closed_costs_only_its_own_line(store: Store, tmp_path: Path) -> None:
    """The reviewer's case: 10,000 rows, `"samr` on data row 11 opens a quote never closed.
    pyarrow read the rest of the file as one value: 9,990 rows neither stored nor quarantined."""
    rows = [penalty(f"q{i}") for i in range(10_000)]
    path = write_csv(tmp_path / "a.csv", rows)
    lines = _with_line(path, 11, lambda line: line.replace(",samr,", ',"samr,'))
    result = ingest_file(store, path, "records", "samr", today=TODAY)
    assert (result.rows_read, result.stored, result.quarantined) == (10_000, 9_999, 1)
    q = store.read("quarantine").to_pylist()
    assert [(x["row"], x["reason"]) for x in q] == [(11, "malformed_row")]
    assert json.loads(q[0]["raw"]) == {"line": lines[11]}
    assert q[0]["message"].startswith("row 11 does not split")
    assert "q10" not in {r["record_id"] for r in store.read("records").to_pylist()}


def test_a_quote_never_closed_in_the_last_column_is_not_taken_as_a_value(
    store: Store, tmp_path: Path
) -> None:
    # the merged lines have the header's number of fields: pyarrow took them as one record
    path = write_csv(tmp_path / "a.csv", [penalty(f"L{i}") for i in range(6)])
    _with_line(path, 3, lambda line: line[: line.rindex(",") + 1] + '"{}')
    result = ingest_file(store, path, "records", "samr", today=TODAY)
    assert (result.rows_read, result.stored, result.by_reason) == (6, 5, {"malformed_row": 1})
    assert [q["row"] for q in store.read("quarantine").to_pylist()] == [3]


def test_a_quote_closed_lines_later_by_another_value_s_quote_costs_one_line(
    store: Store, tmp_path: Path
) -> None:
    rows = [penalty(f"M{i}", attributes='{"note": "x"}') for i in range(6)]
    path = write_csv(tmp_path / "a.csv", rows)  # attributes are quoted: "{""note"": ""x""}"
    _with_line(path, 2, lambda line: line.replace(",samr,", ',"samr,'))
    result = ingest_file(store, path, "records", "samr", today=TODAY)
    assert (result.rows_read, result.stored, result.by_reason) == (6, 5, {"malformed_row": 1})


def test_values_over_several_lines_are_still_read(store: Store, tmp_path: Path) -> None:
    rows = [
        penalty(f"N{i}", attributes=json.dumps({"note": f"line 1\nline {i}"})) for i in range(3)
    ]
    path = write_csv(tmp_path / "a.csv", rows)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("only,three,fields\n")  # a malformed line too: the file is read line by line
    result = ingest_file(store, path, "records", "samr", today=TODAY)
    assert (result.rows_read, result.stored, result.by_reason) == (4, 3, {"malformed_row": 1})
    stored = {
        r["record_id"]: json.loads(r["attributes"]) for r in store.read("records").to_pylist()
    }
    assert stored["N2"] == {"note": "line 1\nline 2"}
    assert [q["row"] for q in store.read("quarantine").to_pylist()] == [4]


def test_values_over_several_lines_quoted_regularly_are_read_at_once(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pretty-printed attributes span lines, with quotes and commas inside: pyarrow reads them
    right, so the file is not read again line by line (2.8 s instead of 1.0 s for a million
    rows with one such value)."""
    rows = [penalty(f"P{i}") for i in range(1_000)]
    rows[10]["attributes"] = json.dumps({"address": "北京市\n海淀区"}, ensure_ascii=False, indent=2)
    rows[500]["attributes"] = json.dumps({"address": "x", "note": "y, z"}, indent=1)
    assert "\n" in rows[10]["attributes"] and "," not in rows[10]["attributes"]
    path = write_csv(tmp_path / "a.csv", rows)

    def by_lines(*args: object) -> Iterator[pa.Table]:
        raise AssertionError("read again line by line")

    monkeypatch.setattr(ingest, "_csv_lines", by_lines)
    result = ingest_file(store, path, "records", "samr", today=TODAY)
    assert (result.rows_read, result.stored, result.quarantined) == (1_000, 1_000, 0)
    stored = {
        r["record_id"]: json.loads(r["attributes"]) for r in store.read("records").to_pylist()
    }
    assert stored["P10"] == {"address": "北京市\n海淀区"}
    assert stored["P500"] == {"address": "x", "note": "y, z"}


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.one_of(st.none(), st.text(alphabet="a\r\n甲,", max_size=4)), max_size=12),
    start=st.integers(0, 12),
)
def test_values_with_line_breaks_are_found_by_their_bytes(
    texts: list[str | None], start: int
) -> None:
    chunk = pa.array(texts, pa.string())[start:]  # a slice: its offsets start inside the buffers
    expected = [i for i, t in enumerate(texts[start:]) if t and ("\n" in t or "\r" in t)]
    assert ingest._line_break_rows(chunk).tolist() == expected


@pytest.mark.parametrize(
    ("text", "rows", "broken"),
    [
        # closed irregularly: pyarrow reads `1 | x<newline>yw | z`
        ('a,b,c\n1,"x\ny"w,z\n2,p,q\n', [("2", 3)], [(1, '1,"x'), (2, 'y"w,z')]),
        # never closed in the last column, no delimiter after: pyarrow reads `2 | z | x<newline>y`
        ('a,b,c\n1,p,q\n2,z,"x\ny\n', [("1", 1)], [(2, '2,z,"x'), (3, "y")]),
        ('a,b,c\n1,p,q\n2,z,"x\ny', [("1", 1)], [(2, '2,z,"x'), (3, "y")]),
    ],
)
def test_a_value_over_lines_not_closed_regularly_is_not_taken_as_a_value(
    tmp_path: Path, text: str, rows: list[tuple[str, int]], broken: list[tuple[int, str]]
) -> None:
    path = tmp_path / "a.csv"
    path.write_text(text, encoding="utf-8", newline="")
    table, unread = read_input(path)
    assert [(r["a"], r["_row"]) for r in table.to_pylist()] == rows
    assert [(u.row, json.loads(u.raw)["line"]) for u in unread] == broken


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"category": "admin_penalty", "severity": ""}, "missing_severity"),
        ({"category": "admin_penalty", "severity": "minor", "amount": "12 yuan"}, "invalid_amount"),
        ({"category": "news", "severity": "negative", "amount": "5"}, "amount_not_applicable"),
        (
            {"category": "third_party_signal", "severity": "", "attributes": '{"x": 1}'},
            "missing_attribute",
        ),
        ({"category": "news", "severity": "awful", "amount": ""}, "severity_not_allowed"),
        ({"category": "honor", "severity": "national", "amount": "", "uscc": ""}, "missing_field"),
    ],
)
def test_more_defects(store: Store, tmp_path: Path, change: dict[str, str], reason: str) -> None:
    row = {**valid_rows(1)[0], "amount": "", **change}
    result = ingest_file(
        store, write_csv(tmp_path / "a.csv", [row]), "records", "samr", today=TODAY
    )
    assert result.by_reason == {reason: 1}, store.read("quarantine").to_pylist()


def test_negative_amounts_where_the_catalogue_allows_them(store: Store, tmp_path: Path) -> None:
    row = {**valid_rows(1)[0], "category": "tax_declaration", "severity": "", "amount": "-12.5"}
    result = ingest_file(store, write_csv(tmp_path / "a.csv", [row]), "records", "tax", today=TODAY)
    assert result.stored == 1


def test_surrounding_whitespace_is_trimmed_and_blank_is_missing(
    store: Store, tmp_path: Path
) -> None:
    row = {**valid_rows(1)[0], "category": " news\t", "severity": "negative ", "amount": ""}
    row["record_id"] = "\tW1 "
    blank = {**valid_rows(1)[0], "record_id": "   "}
    result = ingest_file(
        store, write_csv(tmp_path / "a.csv", [row, blank]), "records", "x", today=TODAY
    )
    assert (result.stored, result.by_reason) == (1, {"missing_field": 1})
    got = store.read("records").to_pylist()[0]
    assert (got["record_id"], got["category"], got["severity"]) == ("W1", "news", "negative")


def test_quarantine_rows_point_to_the_data_row_after_a_malformed_line(
    store: Store, tmp_path: Path
) -> None:
    rows = valid_rows(4)
    rows[3]["event_date"] = "2024-13-05"
    path = write_csv(tmp_path / "a.csv", rows)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] += ",extra"  # data row 2 has a field too many
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = ingest_file(store, path, "records", "samr", today=TODAY)
    assert (result.stored, result.quarantined) == (2, 2)
    quarantine = sorted(store.read("quarantine").to_pylist(), key=lambda q: q["row"])
    assert [(q["row"], q["reason"]) for q in quarantine] == [
        (2, "malformed_row"),
        (4, "invalid_date"),
    ]
    assert quarantine[0]["message"].startswith("row 2 does not split")


@pytest.mark.parametrize("amount", ["NaN", "nan", "inf", "-Infinity", "1e400", "1,2,3", "1,23"])
def test_amounts_that_are_not_finite_numbers_are_quarantined(
    store: Store, tmp_path: Path, amount: str
) -> None:
    row = {**valid_rows(1)[0], "category": "admin_penalty", "severity": "minor", "amount": amount}
    result = ingest_file(store, write_csv(tmp_path / "a.csv", [row]), "records", "x", today=TODAY)
    assert (result.stored, result.by_reason) == (0, {"invalid_amount": 1})
    assert f'amount "{amount}" is not a' in store.read("quarantine").to_pylist()[0]["message"]


def test_thousands_separators_are_accepted(store: Store, tmp_path: Path) -> None:
    rows = [
        {**row, "category": "admin_penalty", "severity": "minor", "amount": amount}
        for row, amount in zip(valid_rows(3), ["1,234", "1,234,567.5", "-0"], strict=True)
    ]
    ingest_file(store, write_csv(tmp_path / "a.csv", rows), "records", "x", today=TODAY)
    assert sorted(r["amount"] for r in store.read("records").to_pylist()) == [0, 1234, 1234567.5]


def test_codes_with_unicode_spaces_are_normalised_as_the_validator_does(
    store: Store, tmp_path: Path
) -> None:
    rows = valid_rows(2)
    rows[0]["uscc"] = CODE + "\u00a0"
    rows[1]["uscc"] = "\u3000" + CODE[:9] + "\u2002" + CODE[9:]
    result = ingest_file(store, write_csv(tmp_path / "a.csv", rows), "records", "x", today=TODAY)
    assert (result.stored, result.quarantined) == (2, 0)
    assert {r["uscc"] for r in store.read("records").to_pylist()} == {CODE}


def test_codes_computed_by_a_mapping_are_normalised_too(store: Store, tmp_path: Path) -> None:
    mapping = Mapping.model_validate(
        {"fields": {"record_id": {"column": "id"}, "category": {"value": "news"},
                    "uscc": {"column": "code", "map": {"-": ""}},
                    "event_date": {"column": "day"}, "severity": {"value": "negative"}}}
    )  # fmt: skip
    path = tmp_path / "a.csv"
    path.write_text(f"id,code,day\nu1,{CODE}\u3000,2024-01-05\n", encoding="utf-8")
    result = ingest_file(store, path, "records", "x", mapping=mapping, today=TODAY)
    assert (result.stored, result.quarantined) == (1, 0)


def test_parquet_timestamps_with_a_time_zone_are_dates_in_china_standard_time(
    store: Store, tmp_path: Path
) -> None:
    utc = UTC
    table = pa.table(
        {
            "record_id": ["t1", "t2", "t3"],
            "uscc": [CODE] * 3,
            "category": ["news"] * 3,
            "severity": ["negative"] * 3,
            "event_date": pa.array(
                [
                    datetime(2024, 1, 5, tzinfo=utc),
                    datetime(2024, 1, 5, 15, 59, 1, 5, tzinfo=utc),
                    datetime(2024, 1, 5, 16, 0, tzinfo=utc),
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "recorded_date": pa.array(
                [datetime(2024, 1, 9, 12, tzinfo=timezone(timedelta(hours=8)))] * 3,
                pa.timestamp("ms", tz="+08:00"),
            ),
        }
    )
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)
    result = ingest_file(store, path, "records", "x", today=TODAY, history=True)
    assert (result.stored, result.quarantined) == (3, 0)
    got = {r["record_id"]: r for r in store.read("records").to_pylist()}
    assert [got[k]["event_date"] for k in ("t1", "t2", "t3")] == [
        date(2024, 1, 5),
        date(2024, 1, 5),
        date(2024, 1, 6),  # 16:00 UTC is midnight in Beijing
    ]
    assert got["t1"]["recorded_date"] == date(2024, 1, 9)


@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_a_header_without_data_rows_stores_nothing_and_succeeds(
    store: Store, tmp_path: Path, ending: str
) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(",".join(RECORD_COLUMNS) + ending, encoding="utf-8")
    result = ingest_file(store, path, "records", "x", today=TODAY)
    assert (result.rows_read, result.stored, result.quarantined) == (0, 0, 0)


BROKEN_MAPPINGS = {
    "syntax.yaml": ("kind: records\nfields: {record_id: {column: record_id}\n", "syntax.yaml"),
    "encoding.yaml": ("kind: records\nencoding: gb2312x\n", "unknown encoding 'gb2312x'"),
    "format.yaml": (
        "kind: records\nfields:\n  record_id: {column: record_id}\n  uscc: {column: uscc}\n"
        "  category: {column: category}\n  event_date: {column: event_date, formats: ['%Q']}\n",
        "date format '%Q'",
    ),
    "sql.yaml": (
        "kind: records\nfields:\n  record_id: {column: record_id}\n  uscc: {column: uscc}\n"
        "  category: {sql: 'no_such_function(category)'}\n  event_date: {column: event_date}\n",
        "no_such_function",
    ),
    # a mapping is not code: it reads the row, never a file of the host
    "subquery.yaml": (
        "kind: records\nfields:\n  record_id: {column: record_id}\n  uscc: {column: uscc}\n"
        "  category: {sql: \"(SELECT content FROM read_text('/etc/hostname'))\"}\n"
        "  event_date: {column: event_date}\n",
        "no SELECT, FROM or ;",
    ),
    "breakout.yaml": (
        "kind: records\nfields:\n  record_id: {column: record_id}\n  uscc: {column: uscc}\n"
        "  category: {sql: \"category) AS VARCHAR), '') AS c FROM read_text('/etc/hosts') --\"}\n"
        "  event_date: {column: event_date}\n",
        'fields.category.sql: sql "category) AS VARCHAR)',  # it does not parse alone
    ),
    "setting.yaml": (
        "kind: records\nfields:\n  record_id: {column: record_id}\n  uscc: {column: uscc}\n"
        "  category: {sql: \"lower(category) || CURRENT_SETTING('temp_directory')\"}\n"
        "  event_date: {column: event_date}\n",
        "may not call current_setting",
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN_MAPPINGS))
def test_a_broken_mapping_is_a_file_error_naming_the_problem(tmp_path: Path, name: str) -> None:
    text, expected = BROKEN_MAPPINGS[name]
    mapping = tmp_path / name
    mapping.write_text(text, encoding="utf-8")
    path = tmp_path / "x.csv"
    path.write_text(f"record_id,uscc,category,event_date\nA,{CODE},news,2024-01-05\n")
    env = {"CREDSUP_DATA_DIR": str(tmp_path / "data")}
    args = ["ingest", str(path), "--source", "x", "--mapping", str(mapping), "--json"]
    res = CliRunner().invoke(app, args, env=env)
    assert res.exit_code == 2, res.output
    error = json.loads(res.stdout)["error"]
    assert expected in error and name in error and "\n" not in error
    assert not (tmp_path / "data" / "store" / "_log").exists() or not any(
        (tmp_path / "data" / "store" / "_log").iterdir()
    )


def test_a_bad_memory_limit_setting_is_a_clear_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", valid_rows(1))
    env = {"CREDSUP_DATA_DIR": str(tmp_path / "data"), "CREDSUP_DUCKDB_MEMORY_LIMIT": "lots"}
    res = CliRunner().invoke(app, ["ingest", str(path), "--source", "x"], env=env)
    assert res.exit_code == 2, res.output
    assert "CREDSUP_DUCKDB_MEMORY_LIMIT" in res.output and "'lots'" in res.output
    assert "Traceback" not in res.output


def test_duckdb_out_of_memory_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    """`credsup tier` on 1 M companies once ran out of DuckDB's limit and printed a traceback
    of 80 lines; the installed command (its entry point, as an operator runs it) says it in one
    line naming the setting, exit 3."""
    import subprocess
    import sys

    data = tmp_path / "data"
    path = write_csv(tmp_path / "a.csv", valid_rows(20))
    result = ingest_file(Store(data / "store"), path, "records", "x", today=TODAY)
    assert result.stored == 20
    credsup = Path(sys.executable).parent / "credsup"
    env = {"PATH": "/usr/bin:/bin", "CREDSUP_DATA_DIR": str(data),
           "CREDSUP_DUCKDB_MEMORY_LIMIT": "1MB", "COLUMNS": "400"}  # fmt: skip
    run = subprocess.run(
        [credsup, "features", "--as-of", TODAY.isoformat()], env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 3, run.stderr
    assert "Traceback" not in run.stderr
    assert "CREDSUP_DUCKDB_MEMORY_LIMIT=1MB" in run.stderr and "Out of Memory" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("variable", "value", "command"),
    [
        ("CREDSUP_DUCKDB_MEMORY_LIMIT", "lots", ["serve"]),
        ("CREDSUP_DUCKDB_MEMORY_LIMIT", "lots", ["db", "upgrade"]),
        ("CREDSUP_DUCKDB_MEMORY_LIMIT", "lots", ["keys", "list"]),
        (
            "CREDSUP_DUCKDB_MEMORY_LIMIT",
            "lots",
            ["plan", "items", "import", "--preset", "national-default"],
        ),
        # a negative period reloaded the model in a tight loop (100 % of a core, idle)
        ("CREDSUP_MODEL_RELOAD_SECONDS", "-1", ["serve"]),
        ("CREDSUP_MODEL_RELOAD_SECONDS", "0", ["serve"]),
        # no thread: every worker failed to start, after the settings were taken
        ("CREDSUP_DUCKDB_THREADS", "0", ["serve"]),
        ("CREDSUP_DUCKDB_THREADS", "0", ["records"]),
        # every stage reads the catalogue (`default_catalogue`): a missing file is named at once
        ("CREDSUP_CATALOGUE_PATH", "/nowhere/catalogue.yaml", ["records"]),
        ("CREDSUP_CATALOGUE_PATH", "/nowhere/catalogue.yaml", ["score", "--as-of", "2026-06-30"]),
    ],
)
def test_every_command_names_a_bad_setting_in_one_line(
    tmp_path: Path, variable: str, value: str, command: list[str]
) -> None:
    env = {"CREDSUP_DATA_DIR": str(tmp_path / "data"), variable: value}
    res = CliRunner().invoke(app, command, env=env)
    assert res.exit_code == 2, res.output
    assert variable in res.output and repr(value) in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_an_unforeseen_error_is_not_an_exit_code_that_means_something(tmp_path: Path) -> None:
    """A crash no command foresaw (here a store file damaged on disk) exited 1, which a script
    reads as "rows quarantined" (ingest) or "not better" (promote): it is 70 now, with its
    traceback and one line; a serving database that cannot be reached is one line, exit 3."""
    import subprocess
    import sys

    data = tmp_path / "data"
    path = write_csv(tmp_path / "a.csv", valid_rows(20))
    assert ingest_file(Store(data / "store"), path, "records", "x", today=TODAY).stored == 20
    (damaged,) = (data / "store" / "records").rglob("*.parquet")
    damaged.write_bytes(b"not parquet")
    credsup = Path(sys.executable).parent / "credsup"
    env = {"PATH": "/usr/bin:/bin", "CREDSUP_DATA_DIR": str(data), "COLUMNS": "400"}
    run = subprocess.run([credsup, "records"], env=env, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 70, run.stderr
    assert "Traceback" in run.stderr and damaged.name in run.stderr
    assert (
        run.stderr.strip()
        .splitlines()[-1]
        .startswith("error: an unforeseen error stopped the command: InvalidInputException")
    )
    away = {**env, "DATABASE_URL": "postgresql+psycopg://postgres:secret@127.0.0.1:9/nowhere"}
    run = subprocess.run([credsup, "keys", "list"], env=away, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 3, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "postgres:***@127.0.0.1:9/nowhere cannot be reached" in run.stderr
    assert "secret" not in run.stderr


def test_a_misspelt_setting_is_named_with_the_one_meant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CREDSUP_DUCKDB_MEMORY_LIMTI=2GB left the 6GB default in force without a word; other
    names of the prefix (a script's, the tests') are not settings misspelt and are left alone."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("CREDSUP_API_PROT=8001\n", encoding="utf-8")
    env = {"CREDSUP_DATA_DIR": str(tmp_path / "data"), "CREDSUP_DUCKDB_MEMORY_LIMTI": "2GB",
           "CREDSUP_HOME": "/opt/credsup", "COLUMNS": "400"}  # fmt: skip
    res = CliRunner().invoke(app, ["records", "--json"], env=env)
    assert res.exit_code == 0, res.output
    warned = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert warned == [
        "warning: CREDSUP_API_PROT (.env) is no setting and is ignored: did you mean "
        "CREDSUP_API_PORT?",
        "warning: CREDSUP_DUCKDB_MEMORY_LIMTI (environment) is no setting and is ignored: did "
        "you mean CREDSUP_DUCKDB_MEMORY_LIMIT?",
    ]
    json.loads(res.stdout)  # stdout is still the one JSON object
    # once a process, though a command takes its settings more than once (plan overdue: 2)
    from cli import main as cli_main

    cli_main._WARNED.clear()
    res = CliRunner().invoke(app, ["plan", "overdue", "--purpose", "test", "--json"], env=env)
    assert res.exit_code == 0, res.output
    assert sum(line.startswith("warning:") for line in res.stderr.splitlines()) == 2


def test_a_catalogue_that_is_not_one_is_named_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "catalogue.yaml"
    bad.write_text("categories: [1]\n", encoding="utf-8")
    env = {"CREDSUP_DATA_DIR": str(tmp_path / "data"), "CREDSUP_CATALOGUE_PATH": str(bad)}
    res = CliRunner().invoke(app, ["records"], env=env)
    assert res.exit_code == 2, res.output
    said = " ".join(res.output.split())
    assert f"CREDSUP_CATALOGUE_PATH={str(bad)!r}: not a valid catalogue (2 problems)" in said
    assert "Traceback" not in res.output


def test_text_is_trimmed_of_unicode_spaces_as_the_code_is(store: Store, tmp_path: Path) -> None:
    """A no-break space after a record id made it another record (a penalty counted twice);
    after a category or a date it was an unknown category or a bad date."""
    first = [
        penalty("郑市监罚〔2024〕1号\u00a0"),
        penalty("\u3000PEN-2", category="admin_penalty\u00a0", event_date="2024-01-05\u3000"),
        penalty("PEN-3\u2002", severity="general\u202f", recorded_date="\u00a02024-01-10"),
    ]
    result = ingest_file(store, write_csv(tmp_path / "a.csv", first), "records", "x", today=TODAY)
    assert (result.stored, result.by_reason) == (3, {})
    got = {r["record_id"]: r for r in store.read("records").to_pylist()}
    assert set(got) == {"郑市监罚〔2024〕1号", "PEN-2", "PEN-3"}
    assert got["PEN-2"]["event_date"] == date(2024, 1, 5)
    assert got["PEN-3"]["severity"] == "general"
    again = [penalty("郑市监罚〔2024〕1号"), penalty("PEN-2"), penalty("PEN-3")]
    result = ingest_file(store, write_csv(tmp_path / "b.csv", again), "records", "x", today=TODAY)
    assert (result.stored, result.already_stored) == (0, 3)


_SPACE_TEXT = st.text(
    alphabet=st.sampled_from([*map(chr, ingest.SPACES), "\x01", "a", "甲", "\u3001", "\U0001f600"]),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(_SPACE_TEXT, min_size=1, max_size=20))
def test_trimming_in_sql_is_python_s_strip(texts: list[str]) -> None:
    """The SQL trims exactly what `str.strip` (and `uscc.compact`) removes, and says whether
    there is anything to remove, whatever the edge characters."""
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t (x VARCHAR)")
        con.executemany("INSERT INTO t VALUES (?)", [[x] for x in texts])
        got = con.execute(
            f"SELECT x, {ingest._trimmed('x')}, {ingest._has_edge_space('x')} FROM t"
        ).fetchall()
    assert [(x, t) for x, t, _ in got] == [(x, x.strip()) for x in texts]
    assert all(edge == (x == "" or x != x.strip()) for x, _, edge in got)


def test_a_record_stored_with_a_trailing_space_is_already_stored_when_sent_again(
    store: Store, tmp_path: Path
) -> None:
    # as earlier versions stored it, untrimmed; its text stays as it is
    old = {**penalty("PEN-9\u00a0"), "event_date": date(2024, 1, 5), "amount": 5000.0,
           "recorded_date": date(2024, 1, 10), "batch_id": "old"}  # fmt: skip
    with store.begin("records") as batch:
        batch.write_arrow("records", pa.Table.from_pylist([old], schema=RECORDS))
    result = ingest_file(
        store, write_csv(tmp_path / "a.csv", [penalty("PEN-9\u00a0")]), "records", "x", today=TODAY
    )
    assert (result.stored, result.already_stored) == (0, 1)
    assert [r["record_id"] for r in store.read("records").to_pylist()] == ["PEN-9\u00a0"]


def test_ids_are_not_normalised_beyond_trimming(store: Store, tmp_path: Path) -> None:
    # NFKC would make the full-width id the ASCII one: two departments' distinct ids
    rows = [penalty("ＰＥＮ－１"), penalty("PEN-1")]
    result = ingest_file(store, write_csv(tmp_path / "a.csv", rows), "records", "x", today=TODAY)
    assert result.stored == 2


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("2024/1/5 8:05", date(2024, 1, 5)),  # Excel and WPS export date-times without seconds
        ("2024-01-05 08:05", date(2024, 1, 5)),
        ("2024-01-05T08:05", date(2024, 1, 5)),
        ("20240105", date(2024, 1, 5)),
        ("2024-01-04T16:30:00Z", date(2024, 1, 5)),  # 00:30 in Beijing
        ("2024-01-04T15:59:59Z", date(2024, 1, 4)),
        ("2024-01-04T16:30:00.250Z", date(2024, 1, 5)),
        ("2024-01-05T00:30:00+08:00", date(2024, 1, 5)),
        ("2024-01-05T00:30:00+09:00", date(2024, 1, 4)),  # 23:30 in Beijing
        ("2024-01-04 12:00:00-0500", date(2024, 1, 5)),  # 01:00 in Beijing
        ("2024-01-05 08:00+08", date(2024, 1, 5)),
    ],
)
def test_date_times_are_dated_in_china(store: Store, tmp_path: Path, text: str, day: date) -> None:
    row = penalty("D1", event_date=text, recorded_date="2024-01-10")
    result = ingest_file(store, write_csv(tmp_path / "a.csv", [row]), "records", "x", today=TODAY)
    assert result.by_reason == {}, store.read("quarantine").to_pylist()
    assert store.read("records").to_pylist()[0]["event_date"] == day


@pytest.mark.parametrize("text", ["2024112", "202415", "2024010", "202401051"])
def test_compact_dates_need_all_eight_digits(store: Store, tmp_path: Path, text: str) -> None:
    # 2024112 could be 2 November or 12 January: not guessed
    row = penalty("D1", event_date=text, recorded_date="2024-12-10")
    result = ingest_file(store, write_csv(tmp_path / "a.csv", [row]), "records", "x", today=TODAY)
    assert result.by_reason == {"invalid_date": 1}
    assert (
        f'event_date "{text}" is not a valid date' in store.read("quarantine")["message"][0].as_py()
    )


def test_a_mapping_s_compact_format_needs_its_full_width(store: Store, tmp_path: Path) -> None:
    mapping = Mapping.model_validate(
        {"fields": {"record_id": {"column": "id"}, "uscc": {"column": "code"},
                    "category": {"value": "news"}, "severity": {"value": "negative"},
                    "event_date": {"column": "day", "formats": ["%Y%m%d%H%M", "%d.%m.%Y"]}}}
    )  # fmt: skip
    path = tmp_path / "a.csv"
    path.write_text(f"id,code,day\na,{CODE},202401050830\nb,{CODE},2024150830\nc,{CODE},5.1.2024\n")
    result = ingest_file(store, path, "records", "x", mapping=mapping, today=TODAY)
    assert (result.stored, result.by_reason) == (2, {"invalid_date": 1})
    assert [q["row"] for q in store.read("quarantine").to_pylist()] == [2]


def _workbook(path: Path, rows: list[list[object]], title: str = "Sheet") -> Path:
    book = openpyxl.Workbook()
    ws = book.active
    assert ws is not None
    ws.title = title
    ws.append(["record_id", "uscc", "category", "event_date", "severity", "amount"])
    for row in rows:
        ws.append(row)
    book.save(path)
    return path


def test_a_formula_without_a_computed_value_is_quarantined_not_read_as_empty(
    store: Store, tmp_path: Path
) -> None:
    # openpyxl saves formulas without their values, as programs that write workbooks do
    path = _workbook(
        tmp_path / "f.xlsx",
        [["f1", CODE, "admin_penalty", "2024-01-05", "general", 5000],
         [None] * 6,
         ["f2", CODE, "admin_penalty", "2024-01-05", "general", "=2500*2"]],
    )  # fmt: skip
    result = ingest_file(store, path, "records", "samr", today=TODAY)
    assert (result.rows_read, result.stored, result.quarantined) == (2, 1, 1)
    q = store.read("quarantine").to_pylist()[0]
    assert (q["row"], q["reason"]) == (3, "formula_without_value")
    assert q["message"].startswith("row 3: cell F4 (amount) holds the formula =2500*2 without")
    assert json.loads(q["raw"])["amount"] == "=2500*2"
    assert [r["record_id"] for r in store.read("records").to_pylist()] == ["f1"]


def test_a_corrupt_workbook_or_unknown_sheet_is_a_file_error(store: Store, tmp_path: Path) -> None:
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(IngestError, match=r"broken\.xlsx: not a readable Excel workbook"):
        ingest_file(store, broken, "records", "samr", today=TODAY)
    book = _workbook(tmp_path / "book.xlsx", [], title="处罚")
    mapping = tmp_path / "sheet.yaml"
    mapping.write_text(
        "kind: records\nsheet: 行政处罚\nfields:\n  record_id: {column: record_id}\n"
        "  uscc: {column: uscc}\n  category: {column: category}\n"
        "  event_date: {column: event_date}\n",
        encoding="utf-8",
    )
    with pytest.raises(IngestError, match="no sheet '行政处罚'; the workbook has: 处罚"):
        ingest_file(store, book, "records", "samr", mapping=mapping, today=TODAY)
    env = {"CREDSUP_DATA_DIR": str(tmp_path / "data")}
    for args in (
        [str(broken)],
        [str(book), "--mapping", str(mapping)],
    ):
        res = CliRunner().invoke(app, ["ingest", *args, "--source", "samr"], env=env)
        assert res.exit_code == 2, res.output  # a file error, not "some rows quarantined"
        assert res.exception is None or isinstance(res.exception, SystemExit)
        assert "Traceback" not in res.output
    assert store.log() == []


def test_a_gbk_file_read_as_utf8_says_which_encoding_to_give(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    rows = [penalty("郑市监罚〔2024〕1号", attributes='{"名称": "郑州某某有限公司"}')]
    write_csv(path, rows)
    path.write_bytes(path.read_text(encoding="utf-8").encode("gbk"))
    with pytest.raises(IngestError, match=r"gbk\.csv: not utf-8 text .*give --encoding gbk"):
        ingest_file(store, path, "records", "samr", today=TODAY)
    env = {"CREDSUP_DATA_DIR": str(tmp_path / "data")}
    args = ["ingest", str(path), "--source", "samr", "--json"]
    res = CliRunner().invoke(app, args, env=env)
    assert res.exit_code == 2 and "--encoding gbk" in json.loads(res.stdout)["error"]
    res = CliRunner().invoke(app, [*args, "--encoding", "gbk"], env=env)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["stored"] == 1
    stored = Store(tmp_path / "data" / "store").read("records").to_pylist()
    assert stored[0]["record_id"] == "郑市监罚〔2024〕1号"
    res = CliRunner().invoke(app, [*args, "--encoding", "gbk2"], env=env)
    assert res.exit_code == 2 and "unknown encoding 'gbk2'" in res.stdout


def test_the_same_rejected_row_from_another_file_or_department_is_quarantined_again(
    store: Store, tmp_path: Path
) -> None:
    bad = [penalty("Z1", uscc=CODE[:-1] + "X")]
    jan = write_csv(tmp_path / "jan.csv", bad)
    feb = write_csv(tmp_path / "feb.csv", bad)
    first = ingest_file(store, jan, "records", "samr", today=TODAY)
    again = ingest_file(store, jan, "records", "samr", today=TODAY)
    other_dept = ingest_file(store, jan, "records", "tax", today=TODAY)
    other_file = ingest_file(store, feb, "records", "samr", today=TODAY)
    assert [r.already_quarantined for r in (first, again, other_dept, other_file)] == [0, 1, 0, 0]
    quarantine = store.read("quarantine").to_pylist()
    assert sorted((Path(q["source_file"]).name, q["source_dept"]) for q in quarantine) == [
        ("feb.csv", "samr"), ("jan.csv", "samr"), ("jan.csv", "tax"),
    ]  # fmt: skip
