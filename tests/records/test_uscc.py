from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from records import uscc

REAL_CODES = [
    line.strip()
    for line in (Path(__file__).parent / "data" / "real_uscc_codes.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

KINDS = [a + c for a, cats in uscc.AUTHORITY_CATEGORIES.items() for c in cats]
REGIONS = ["110000", "110105", "310115", "410102", "411700", "650100", "100000", "820000"]


def test_real_codes_validate() -> None:
    assert len(REAL_CODES) >= 300
    for code in REAL_CODES:
        assert uscc.validate(code) == code
    assert uscc.valid_mask(pa.array(REAL_CODES)).all()


def test_validate_compacts_spaces_and_case() -> None:
    assert uscc.validate(" 91 110000 600037341l") == "91110000600037341L"


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        ("91110000600037341N", "check", "check character should be L, got N"),
        ("12345", "length", "code must have 18 characters, got 5"),
        ("9111000060003IOZSV", "charset", "character 'I' at position 14 is not allowed"),
        ("B1110000600037341L", "authority", "registration authority code 'B' is not allocated"),
        ("94110000600037341L", "category", "organisation category '4' is not allocated"),
        ("91990000600037341L", "region", "starts with 99, which is not a province"),
        ("9111000060003734XL", "org_check", "check digit (position 17) should be 1, got X"),
    ],
)
def test_messages_say_exactly_what_is_wrong(code: str, reason: str, message: str) -> None:
    with pytest.raises(uscc.InvalidUSCC) as info:
        uscc.validate(code)
    assert info.value.reason == reason
    assert message in str(info.value)


@st.composite
def generated_codes(draw: st.DrawFn) -> str:
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(KINDS))
    region = draw(st.sampled_from(REGIONS))
    return uscc.generate(np.random.default_rng(seed), kind, region)


@given(generated_codes())
def test_every_generated_code_validates(code: str) -> None:
    assert uscc.validate(code) == code
    assert uscc.valid_mask(pa.array([code]))[0]


def _substitutions(code: str) -> list[str]:
    others = uscc.CHARSET + "IOZSV*#"
    return [code[:i] + ch + code[i + 1 :] for i in range(18) for ch in others if ch != code[i]]


@settings(max_examples=30)
@given(generated_codes())
def test_every_single_character_substitution_is_detected(code: str) -> None:
    subs = _substitutions(code)
    for bad in subs:
        with pytest.raises(uscc.InvalidUSCC):
            uscc.validate(bad)
    assert not uscc.valid_mask(pa.array(subs)).any()


def test_substitutions_in_real_codes_are_detected() -> None:
    subs = [s for code in REAL_CODES[::10] for s in _substitutions(code)]
    assert not uscc.valid_mask(pa.array(subs)).any()
    assert not any(uscc.is_valid(s) for s in subs[:: max(1, len(subs) // 2000)])


@given(st.lists(st.text(alphabet=uscc.CHARSET + "IOa -", min_size=0, max_size=20), max_size=30))
def test_vectorised_mask_agrees_with_validate(texts: list[str]) -> None:
    compacted = [uscc.compact(t) for t in texts]
    mask = uscc.valid_mask(pa.array(compacted, pa.string()))
    assert mask.tolist() == [uscc.is_valid(c) for c in compacted]


def test_mask_handles_nulls_and_sliced_arrays() -> None:
    arr = pa.array([None, "91110000600037341L", "x", *REAL_CODES[:5]])
    assert uscc.valid_mask(arr).tolist() == [False, True, False, *[True] * 5]
    assert uscc.valid_mask(arr.slice(1, 3)).tolist() == [True, False, True]
    chunked = pa.chunked_array([arr.slice(0, 2), arr.slice(2)])
    assert uscc.valid_mask(chunked).tolist() == uscc.valid_mask(arr).tolist()


def test_generate_many_gives_distinct_valid_codes_of_the_asked_kind() -> None:
    rng = np.random.default_rng(1)
    kinds = ["92"] * 5000 + ["91"] * 5000
    codes = uscc.generate_many(rng, kinds, ["410102"] * 10_000)
    assert len(set(codes)) == 10_000
    assert uscc.valid_mask(pa.array(codes)).all()
    assert all(c.startswith("92410102") for c in codes[:5000])


def test_derive_is_deterministic_and_valid() -> None:
    a = uscc.derive("9c7fa510616a683058ce97d0bc768a62", "bdci2020")
    assert a == uscc.derive("9c7fa510616a683058ce97d0bc768a62", "bdci2020")
    assert a != uscc.derive("9c7fa510616a683058ce97d0bc768a62", "boston")
    assert uscc.is_valid(a)


def test_the_re2_separator_class_removes_what_compact_removes() -> None:
    chars = [chr(c) for c in range(sys.maxunicode + 1) if c < 0xD800 or c > 0xDFFF]
    texts = pa.array(["a" + c + "b" for c in chars])
    removed = pc.equal(pc.replace_substring_regex(texts, uscc.SEPARATORS_RE2, ""), "ab")
    by_re2 = {c for c, r in zip(chars, removed.to_pylist(), strict=True) if r}
    assert by_re2 == {c for c in chars if uscc.compact("a" + c + "b") == "AB"}


# ---- resident identity card numbers -----------------------------------------------------------


def _resident_id(province: int, city: int, born: str, serial: int) -> str:
    first17 = f"{province:02d}{city:04d}{born}{serial:03d}"
    total = sum(int(ch) * w for ch, w in zip(first17, uscc.ID_WEIGHTS, strict=True))
    return first17 + uscc.ID_CHECK[total % 11]


def _passing_resident_ids(n: int, seed: int) -> list[str]:
    """`n` valid resident identity numbers that pass every credit-code check."""
    rng = np.random.default_rng(seed)

    def born() -> str:
        return f"{rng.integers(1930, 2010)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"

    people = [
        _resident_id(int(rng.choice([11, 12, 13, 51, 52, 53])), int(rng.integers(0, 10_000)),
                     born(), int(rng.integers(0, 1000)))
        for _ in range(1500 * n)
    ]  # fmt: skip
    rows = np.frombuffer("".join(people).encode(), np.uint8).reshape(-1, 18)
    passing = np.flatnonzero(uscc._valid_rows(rows, refuse_ids=False))
    assert len(passing) >= n, len(passing)
    return [people[i] for i in passing[:n]]


def test_a_resident_identity_number_is_no_credit_code() -> None:
    """A natural person's identity number that passes the credit-code checks (the reviewer's:
    Nanchong, born 1985-06-12) was stored, scored and published as a company."""
    person = "511302198506121181"
    assert uscc.is_resident_id(person)
    with pytest.raises(uscc.InvalidUSCC) as info:
        uscc.validate(person)
    assert info.value.reason == "resident_id"
    assert "natural person is never scored" in str(info.value)
    assert not uscc.valid_mask(pa.array([person]))[0]
    passing = _passing_resident_ids(100, seed=11)
    assert not uscc.valid_mask(pa.array(passing)).any()
    assert not any(uscc.is_valid(c) for c in passing)
    # a few among many codes (the mask then checks those few alone)
    mixed = REAL_CODES + passing[:3]
    assert uscc.valid_mask(pa.array(mixed)).tolist() == [True] * len(REAL_CODES) + [False] * 3


def test_only_a_valid_birth_date_and_check_digit_make_an_identity_number() -> None:
    person = "511302198506121181"
    wrong_check = person[:17] + "2"
    no_date = person[:10] + "1332" + person[14:]  # month 13
    feb_29 = _resident_id(51, 1302, "19850229", 118)  # 1985 is not a leap year
    leap = _resident_id(51, 1302, "19840229", 118)
    unborn = _resident_id(51, 1302, "20991231", 118)
    assert [uscc.is_resident_id(c) for c in (wrong_check, no_date, feb_29, leap, unborn)] == [
        False, False, False, True, False
    ]  # fmt: skip
    codes = pa.array([wrong_check, no_date, feb_29, leap, unborn, person])
    rows = np.frombuffer("".join(codes.to_pylist()).encode(), np.uint8).reshape(-1, 18)
    val = uscc._VALUE[np.ascontiguousarray(rows.T)]
    assert uscc._resident_ids(rows.T, val).tolist() == [False, False, False, True, False, True]


@settings(max_examples=200)
@given(
    st.sampled_from(sorted(uscc.ID_PROVINCES)), st.integers(0, 9999),
    st.dates(date(1890, 1, 1), date(2030, 12, 31)), st.integers(0, 999),
    st.sampled_from("0123456789X"),
)  # fmt: skip
def test_vectorised_identity_check_agrees_with_the_scalar_one(
    province: int, city: int, born: date, serial: int, last: str
) -> None:
    right = _resident_id(province, city, born.strftime("%Y%m%d"), serial)
    for code in (right, right[:17] + last):
        rows = np.frombuffer(code.encode(), np.uint8).reshape(1, 18)
        val = uscc._VALUE[np.ascontiguousarray(rows.T)]
        assert uscc._resident_ids(rows.T, val)[0] == uscc.is_resident_id(code)
        assert uscc.valid_mask(pa.array([code]))[0] == uscc.is_valid(code)


def test_generated_codes_are_never_identity_numbers() -> None:
    rng = np.random.default_rng(5)
    kinds = ["11", "12", "13", "51", "52", "53"] * 20_000
    regions = [
        f"{p}{rng.integers(0, 10_000):04d}" for p in ("13", "51", "53") for _ in range(40_000)
    ]
    codes = uscc.generate_many(rng, kinds, regions)
    assert uscc.valid_mask(pa.array(codes)).all()
    assert not any(uscc.is_resident_id(c) for c in codes)
