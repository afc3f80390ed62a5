"""The list as CSV and Excel for regulators, and the inspector pool read from their files."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from records.uscc import generate_many
from serving.spotcheck.export import (
    COLUMN_NAMES,
    InspectorFileError,
    plan_list_bytes,
    read_inspectors,
    to_csv_bytes,
    to_xlsx_bytes,
)

CODES = generate_many(np.random.default_rng(3), ["91", "92", "12"], ["410102", "410105", "110101"])


def _list_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task_id": ["000123", "000124", "000125"],
            "plan_id": ["P-001"] * 3,
            "visit_no": [1, 1, 2],
            "uscc": CODES,
            "company_name": ["郑州市某食品有限公司", "  前后有空格  ", '=HYPERLINK("x") & <b>'],
            "region": ["010101", "410105", "110101"],
            "tier": ["C", "C", "D"],
            "item_id": ["0012", "0013", "0012"],
            "department": ["samr", "fire", "xyz"],
            "inspectors": ["I01;I02", "I03;I04", "I01;I02"],
            "inclusion_prob": [0.1, 0.4, np.nan],
            "basis": ["random", "triggered", "random"],
            "due_date": [date(2026, 10, 29), date(2026, 10, 30), None],
            "status": ["open", "done", "overdue"],
            "result": [None, "problem", "serious"],
            "check_date": pd.to_datetime(["2026-09-25", None, "2026-09-27"]),
            "note": ["a\x0bb", "c", "d"],
        }
    )


# ---- CSV --------------------------------------------------------------------------------------


def test_csv_round_trip_keeps_codes_and_has_chinese_headers() -> None:
    frame = _list_frame()
    data = to_csv_bytes(frame)
    assert data.startswith(b"\xef\xbb\xbf")
    back = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert list(back.columns) == [COLUMN_NAMES.get(c, c) for c in frame.columns]
    assert list(back["统一社会信用代码"]) == CODES
    assert list(back["任务编号"]) == ["000123", "000124", "000125"]
    assert list(back["所属区域"]) == ["010101", "410105", "110101"]
    assert list(back["检查事项编号"]) == ["0012", "0013", "0012"]
    assert list(back["实施部门"]) == ["市场监管局", "消防救援机构", "xyz"]
    assert list(back["抽取方式"]) == ["随机抽取", "触发检查", "随机抽取"]
    assert list(back["状态"]) == ["待检查", "已完成", "已逾期"]
    assert list(back["检查结果"]) == ["", "发现问题", "发现严重问题"]
    assert list(back["完成期限"]) == ["2026-10-29", "2026-10-30", ""]
    assert list(back["检查日期"]) == ["2026-09-25", "", "2026-09-27"]
    # names kept as they are, except that a would-be formula is defused (see the next test)
    assert list(back["企业名称"]) == [*frame["company_name"][:2], "'" + frame["company_name"][2]]
    assert back["note"].iloc[1] == "c"


def test_csv_in_english_keeps_names_and_values() -> None:
    frame = _list_frame()
    back = pd.read_csv(io.BytesIO(to_csv_bytes(frame, chinese=False)), dtype=str)
    assert list(back.columns) == list(frame.columns)
    assert list(back["basis"]) == ["random", "triggered", "random"]
    assert list(back["department"]) == ["samr", "fire", "xyz"]


# ---- Excel ------------------------------------------------------------------------------------


def _sheet(data: bytes) -> tuple[openpyxl.Workbook, list[list[openpyxl.cell.Cell]]]:
    book = openpyxl.load_workbook(io.BytesIO(data))
    return book, [list(row) for row in book.worksheets[0].iter_rows()]


def test_xlsx_headers_text_codes_dates_and_rows() -> None:
    frame = _list_frame()
    book, rows = _sheet(to_xlsx_bytes(frame))
    ws = book.worksheets[0]
    assert ws.title == "抽查名单"
    assert ws.freeze_panes == "A2"
    assert len(rows) == 1 + len(frame)
    header = [c.value for c in rows[0]]
    assert header == [COLUMN_NAMES.get(c, c) for c in frame.columns]
    assert all(c.font.b for c in rows[0])
    col = {name: k for k, name in enumerate(header)}
    for k, code in enumerate(CODES, start=1):
        cell = rows[k][col["统一社会信用代码"]]
        assert cell.data_type == "s" and cell.value == code
    assert [rows[k][col["所属区域"]].value for k in (1, 2, 3)] == ["010101", "410105", "110101"]
    assert rows[1][col["任务编号"]].data_type == "s"
    assert rows[1][col["任务编号"]].value == "000123"
    assert rows[1][col["检查事项编号"]].value == "0012"
    due = rows[1][col["完成期限"]]
    assert due.is_date and due.value == datetime(2026, 10, 29)
    assert rows[3][col["完成期限"]].value is None
    assert rows[3][col["检查日期"]].value == datetime(2026, 9, 27)
    assert rows[1][col["联合检查序号"]].value == 1
    assert rows[2][col["入选概率"]].value == pytest.approx(0.4)
    assert rows[3][col["入选概率"]].value is None  # NaN: an empty cell
    assert [rows[k][col["实施部门"]].value for k in (1, 2, 3)] == [
        "市场监管局",
        "消防救援机构",
        "xyz",
    ]
    assert rows[2][col["抽取方式"]].value == "触发检查"
    assert rows[1][col["检查结果"]].value is None


def test_xlsx_text_is_never_a_formula_and_keeps_spaces() -> None:
    _, rows = _sheet(to_xlsx_bytes(_list_frame(), chinese=False))
    header = [c.value for c in rows[0]]
    name = header.index("company_name")
    assert rows[2][name].value == "  前后有空格  "
    formula_like = rows[3][name]
    assert formula_like.data_type == "s"
    assert formula_like.value == '=HYPERLINK("x") & <b>'
    assert rows[1][header.index("note")].value == "ab"  # a control character xlsx cannot hold


def test_xlsx_title_row_and_pandas_reads_codes() -> None:
    frame = _list_frame()
    data = to_xlsx_bytes(frame, sheet="第一批", title="2026年第一批双随机抽查名单")
    book, rows = _sheet(data)
    assert book.sheetnames == ["第一批"]
    assert rows[0][0].value == "2026年第一批双随机抽查名单"
    assert book.worksheets[0].freeze_panes == "A3"
    assert len(rows) == 2 + len(frame)
    back = pd.read_excel(io.BytesIO(data), header=1, dtype=str)
    assert list(back["统一社会信用代码"]) == CODES
    assert list(back["任务编号"]) == ["000123", "000124", "000125"]


def test_xlsx_codes_held_as_numbers_become_text() -> None:
    frame = pd.DataFrame({"region": [410102, 410105], "item_id": [12.0, np.nan], "n": [1, 2]})
    _, rows = _sheet(to_xlsx_bytes(frame))
    assert [c.value for c in rows[1]] == ["410102", "12", 1]
    assert rows[1][0].data_type == "s"


def test_xlsx_empty_list() -> None:
    frame = _list_frame().iloc[:0]
    _, rows = _sheet(to_xlsx_bytes(frame))
    assert len(rows) == 1
    assert rows[0][0].value == "任务编号"


def test_xlsx_of_arrow_backed_columns_built_in_pieces() -> None:
    """Columns read from a database arrive as Arrow-backed strings in several chunks."""
    parts = [_list_frame().astype({"uscc": "string[pyarrow]", "inspectors": "string[pyarrow]"})
             for _ in range(3)]  # fmt: skip
    frame = pd.concat(parts, ignore_index=True)
    _, rows = _sheet(to_xlsx_bytes(frame))
    assert [r[3].value for r in rows[1:]] == list(frame["uscc"])


def _plan(created: datetime) -> dict[str, object]:
    """A stored plan's row as `plans.plan_list` returns it."""
    return {"id": "SJ-2026-00007", "name": "2026年第三季度联合抽查",
            "start_date": date(2026, 7, 6), "due_date": date(2026, 8, 3),
            "list_sha256": "ab" * 32, "created_at": created}  # fmt: skip


def test_a_plans_json_list_has_dates_as_dates_and_numbers_as_stored() -> None:
    """`credsup plan show --format json` gave a bare list of tasks with "2026-10-29T00:00:00.000"
    for a date and probabilities cut to 10 digits: the list is the API's object, the plan with
    its tasks, dates as ISO dates, numbers at full precision, missing values null."""
    frame = _list_frame()
    frame["inclusion_prob"] = [0.028038715277777776, 0.4, np.nan]
    body = json.loads(plan_list_bytes(_plan(datetime(2026, 7, 6, 9, 30)), frame, "json"))
    assert {k: v for k, v in body.items() if k != "tasks"} == {
        "plan_id": "SJ-2026-00007", "name": "2026年第三季度联合抽查", "start_date": "2026-07-06",
        "due_date": "2026-08-03", "list_sha256": "ab" * 32,
    }  # fmt: skip
    tasks = body["tasks"]
    assert [t["due_date"] for t in tasks] == ["2026-10-29", "2026-10-30", None]
    assert [t["check_date"] for t in tasks] == ["2026-09-25", None, "2026-09-27"]
    assert [t["inclusion_prob"] for t in tasks] == [0.028038715277777776, 0.4, None]
    assert [t["uscc"] for t in tasks] == CODES and tasks[0]["task_id"] == "000123"
    assert [t["visit_no"] for t in tasks] == [1, 1, 2] and tasks[0]["result"] is None
    assert tasks[1]["company_name"] == "  前后有空格  "  # as stored: no CSV or Excel defusing
    assert (
        json.loads(plan_list_bytes(_plan(datetime(2026, 7, 6)), frame.iloc[:0], "json"))["tasks"]
        == []
    )


def test_a_plans_excel_list_is_the_same_bytes_each_time() -> None:
    """The API's and the command line's workbook of one list are the same bytes: dated by the
    plan's creation (its properties and zip entries), not by the moment they are written."""
    created = datetime(2026, 7, 6, 9, 30, 15, tzinfo=timezone(timedelta(hours=8)))
    frame = _list_frame()
    first = plan_list_bytes(_plan(created), frame, "xlsx")
    assert plan_list_bytes(_plan(created), frame.copy(), "xlsx") == first
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert {i.date_time for i in archive.infolist()} == {(2026, 7, 6, 1, 30, 14)}  # 2 s steps
        core = archive.read("docProps/core.xml").decode()
    assert core.count("2026-07-06T01:30:15Z") == 2  # created and modified, in UTC
    _, rows = _sheet(first)
    assert rows[0][0].value == "2026年第三季度联合抽查（SJ-2026-00007）"
    assert [c.value for c in rows[1]] == [COLUMN_NAMES.get(c, c) for c in frame.columns]
    later = plan_list_bytes(_plan(created + timedelta(seconds=2)), frame, "xlsx")
    assert later != first
    csv = plan_list_bytes(_plan(created), frame, "csv")
    assert csv == to_csv_bytes(frame) and csv.startswith(b"\xef\xbb\xbf")


TEXT = st.text(
    st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters=[chr(c) for c in range(32) if chr(c) not in "\t\n\r"],
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(TEXT, min_size=1, max_size=5))
def test_xlsx_text_round_trips(values: list[str]) -> None:
    _, rows = _sheet(to_xlsx_bytes(pd.DataFrame({"company_name": values}), chinese=False))
    assert [r[0].value for r in rows[1:]] == values


# ---- the inspector pool -----------------------------------------------------------------------

ENGLISH = pd.DataFrame(
    {
        "inspector_id": ["I01", "I02", "I03"],
        "name": ["张三", "李四", "王五"],
        "department": ["samr", "市场监管局", "fire"],
        "area": ["4101", "410102", ""],
        "items": ["0012;0013", "0012；0013、0014", ""],
        "active": ["true", "0", "在岗"],
        "conflicts": [CODES[0], f"{CODES[1]},{CODES[2]}", ""],
    }
)
CHINESE = ENGLISH.rename(
    columns={
        "inspector_id": "执法人员编号",
        "name": "姓名",
        "department": "所属部门",
        "area": "区域",
        "items": "资格事项",
        "active": "状态",
        "conflicts": "回避企业",
    }
).assign(状态=["是", "否", "在岗"])


def _check_pool(pool: pd.DataFrame) -> None:
    assert list(pool.columns) == [
        "inspector_id", "name", "department", "area", "items", "active", "conflicts",
    ]  # fmt: skip
    assert list(pool["inspector_id"]) == ["I01", "I02", "I03"]
    assert list(pool["department"]) == ["samr", "samr", "fire"]
    assert list(pool["area"]) == ["4101", "410102", ""]
    assert list(pool["items"]) == [("0012", "0013"), ("0012", "0013", "0014"), ()]
    assert list(pool["active"]) == [True, False, True]
    assert pool["active"].dtype == bool
    assert list(pool["conflicts"]) == [(CODES[0],), (CODES[1], CODES[2]), ()]


def _write_xlsx(frame: pd.DataFrame, path: Path, title: str | None = None) -> None:
    book = openpyxl.Workbook()
    ws = book.active
    assert ws is not None
    if title:
        ws.append([title])
    ws.append(list(frame.columns))
    for row in frame.itertuples(index=False):
        ws.append(list(row))
    book.save(path)


@pytest.mark.parametrize("frame", [ENGLISH, CHINESE], ids=["english", "chinese"])
def test_read_inspectors_csv(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "inspectors.csv"
    frame.to_csv(path, index=False, encoding="utf-8-sig")
    _check_pool(read_inspectors(path))


@pytest.mark.parametrize("frame", [ENGLISH, CHINESE], ids=["english", "chinese"])
def test_read_inspectors_xlsx(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "inspectors.xlsx"
    _write_xlsx(frame, path)
    _check_pool(read_inspectors(path))


def test_read_inspectors_gbk_csv_and_numbers_in_excel(tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    CHINESE.to_csv(path, index=False, encoding="gb18030")
    _check_pool(read_inspectors(path))
    numeric = CHINESE.assign(区域=[4101, 410102, None], 执法人员编号=[1001, 1002, 1003])
    xlsx = tmp_path / "numbers.xlsx"
    _write_xlsx(numeric, xlsx, title="执法检查人员名录库")
    pool = read_inspectors(xlsx)
    assert list(pool["inspector_id"]) == ["1001", "1002", "1003"]
    assert list(pool["area"]) == ["4101", "410102", ""]


def test_read_inspectors_reports_every_bad_row(tmp_path: Path) -> None:
    bad = pd.DataFrame(
        {
            "inspector_id": ["I01", "", "I03", "I04", "I01", "I06", "I07"],
            "department": ["samr", "samr", "", "samr", "samr", "samr", "samr"],
            "area": ["4101", "4101", "4101", "41ab", "4101", "4101", "4101"],
            "active": ["true", "true", "true", "true", "true", "maybe", "1"],
            "conflicts": ["", "", "", "", "", "", "91410102XXXXXXXXXX"],
        }
    )
    for suffix in ("csv", "xlsx"):
        path = tmp_path / f"bad.{suffix}"
        if suffix == "csv":
            bad.to_csv(path, index=False)
        else:
            _write_xlsx(bad, path)
        with pytest.raises(InspectorFileError) as info:
            read_inspectors(path)
        message = str(info.value)
        assert "6 bad rows" in message
        assert "row 3: missing inspector_id" in message
        assert "row 4: missing department" in message
        assert "row 5: area '41ab' is not a division code" in message
        assert "row 6: inspector_id I01 already on row 2" in message
        assert "row 7: active value 'maybe' unknown" in message
        assert "row 8: conflict code '91410102XXXXXXXXXX' invalid" in message
        assert [r for r, _ in info.value.problems] == [3, 4, 5, 6, 7, 8]


def test_read_inspectors_shows_the_first_20_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    pd.DataFrame({"inspector_id": [f"I{k}" for k in range(25)], "department": ""}).to_csv(
        path, index=False
    )
    with pytest.raises(ValueError, match="25 bad rows") as info:
        read_inspectors(path)
    message = str(info.value)
    assert "row 21:" in message and "row 22:" not in message
    assert "… and 5 more" in message


def test_read_inspectors_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "no_department.csv"
    pd.DataFrame({"执法人员编号": ["I01"], "姓名": ["张三"]}).to_csv(path, index=False)
    with pytest.raises(
        ValueError, match="lacks the columns \\(department: department / 所属部门\\)"
    ):
        read_inspectors(path)
    other = tmp_path / "other.csv"
    pd.DataFrame({"foo": [1]}).to_csv(other, index=False)
    with pytest.raises(ValueError, match="no inspector header"):
        read_inspectors(other)


def test_csv_text_is_never_a_formula() -> None:
    """Text a spreadsheet would run (= + - @ first) gets a leading apostrophe; codes, numbers,
    dates and ordinary text are unchanged."""
    frame = pd.DataFrame(
        {
            "uscc": CODES,
            "company_name": ['=HYPERLINK("http://x","y")', "+86 食品店", "郑州市某公司"],
            "inclusion_prob": [0.1, -0.5, 1.0],
            "check_date": [date(2026, 9, 25), None, date(2026, 9, 27)],
        }
    )
    back = pd.read_csv(io.BytesIO(to_csv_bytes(frame, chinese=False)), dtype=str,
                       encoding="utf-8-sig", keep_default_na=False)  # fmt: skip
    assert list(back["company_name"]) == [
        "'" + '=HYPERLINK("http://x","y")', "'+86 食品店", "郑州市某公司",
    ]  # fmt: skip
    assert list(back["uscc"]) == CODES
    assert list(back["inclusion_prob"]) == ["0.1", "-0.5", "1"]
    assert list(back["check_date"]) == ["2026-09-25", "", "2026-09-27"]
