"""Excel, Parquet and department-specific CSV exports through declarative mappings."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from cli.main import app
from records.ingest import IngestError, ingest_file
from records.mapping import Mapping, load_mapping, packaged_mappings
from records.schema import RECORD_COLUMNS
from records.store import Store
from tests.records.factory import TODAY, valid_rows, write_csv

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
    ws.append([None, None, None, None, None, None, None])  # blank line: ignored
    ws.append(["x3", CODE, "admin_penalty", "not a date", "2024-03-06", "minor", None])
    path = tmp_path / "dept.xlsx"
    book.save(path)
    result = ingest_file(store, path, "records", "samr", today=TODAY)
    assert (result.stored, result.quarantined) == (2, 1)
    assert result.by_reason == {"invalid_date": 1}
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
    result = ingest_file(store, export, "records", "zz-samr", mapping=mapping_file, today=TODAY)
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
    result = ingest_file(store, path, "records", "x", today=TODAY)
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
