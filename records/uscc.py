"""Unified social credit code (统一社会信用代码, GB 32100-2015): validation and generation.

A code is 18 characters: registration authority (1) + organisation category (1) + 6-digit
administrative division (GB/T 2260) + 9-character organisation code (GB 11714, whose 9th
character is its own check digit) + one mod-31 check character. See ../shared/DOMAIN.md §3.

A resident identity card number (公民身份号码, GB 11643) is also 18 characters, and some pass
every check above: 1,020 of 2 M random valid identity numbers did (1 in 690 of those whose city
digits read as a province). Such a number names a natural person, who is never scored (DOMAIN
§10): a code that is also a valid identity number (province, date of birth up to today and its
MOD 11-2 check digit all fit) is refused. Only codes whose first two characters are digits of a
province can be both, so the codes of enterprises (91), individual businesses (92) and
cooperatives (93) are never affected; of 2 M random valid codes of organs, institutions and
social organisations (11–13, 51–53) 13 were identity numbers (1 in 154,000).

`validate` checks one code and says exactly what is wrong; `valid_mask` checks millions at once
(numpy over the raw bytes) for ingestion, and only the rejected ones go through `validate` to get
their message. `generate_many` makes valid codes for the simulator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from records.clock import china_today

CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
"""The 31 symbols of GB 32100 (no I, O, Z, S, V); a symbol's value is its index."""

CHECK_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

AUTHORITY_CATEGORIES: dict[str, str] = {
    "1": "1239",  # 机构编制: organ, public institution, mass organisation, other
    "2": "19",  # 外交
    "3": "123459",  # 司法行政
    "4": "19",  # 文化
    "5": "1239",  # 民政: social group, private non-enterprise, foundation, other
    "6": "129",  # 旅游
    "7": "129",  # 宗教
    "8": "19",  # 工会
    "9": "123",  # 市场监管: enterprise, individual business, farmers' cooperative
    "A": "19",  # 中央军委改革和编制办公室
    "N": "1239",  # 农业: collective economic organisations
    "Y": "1",  # 其他
}
"""Registration-authority code → the organisation-category codes allocated under it."""

PROVINCES = frozenset(
    {10, 11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82}
)
"""First two digits of GB/T 2260 division codes (10 = national-level bodies)."""

ID_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}
)
"""First two digits of a resident identity card number (GB 11643, its province)."""

ID_WEIGHTS = tuple(pow(2, 17 - k, 11) for k in range(17))
ID_CHECK = "10X98765432"
"""GB 11643 check character (ISO 7064 MOD 11-2) by the weighted sum modulo 11."""

INDIVIDUAL_BUSINESS = "92"
"""Authority 9, category 2: individual businesses (个体工商户), whose owner is a natural person."""

MARKET_ENTITY_TYPES = ("enterprise", "individual_business", "cooperative")
"""Entity types (`records.schema.ENTITY_TYPES`) registered by market regulation (authority 9):
only their codes start 91, 92, 93, and only they file annual reports with it."""

ENTITY_TYPE_OF_CODE: dict[str, str] = {
    "91": "enterprise", "92": "individual_business", "93": "cooperative",
    "12": "public_institution",
}  # fmt: skip
"""The entity type the first two characters of a code say; other codes of authority 5 (civil
affairs) are social organisations, all the rest `other` (`entity_type_of_code`)."""


def entity_type_of_code(code: str) -> str:
    """The entity type a (valid) code says, as ingestion defaults it."""
    kind = ENTITY_TYPE_OF_CODE.get(code[:2])
    if kind is not None:
        return kind
    return "social_organisation" if code[:1] == "5" else "other"


def entity_type_sql(column: str) -> str:
    """SQL: `entity_type_of_code` of the code in `column`."""
    cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in ENTITY_TYPE_OF_CODE.items())
    return (
        f"CASE left({column}, 2) {cases} ELSE CASE WHEN left({column}, 1) = '5' "
        "THEN 'social_organisation' ELSE 'other' END END"
    )


class InvalidUSCC(ValueError):
    """A code that is not a valid unified social credit code; `reason` is a stable machine code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def compact(code: str) -> str:
    """The code without spaces or hyphens, upper-cased (as departments type it)."""
    return "".join(code.split()).replace("-", "").upper()


SEPARATORS_RE2 = r"[\s\v\x{1c}-\x{1f}\x{85}\p{Z}\-]"
r"""What `compact` removes, as an RE2 class for Arrow and DuckDB: every character Python counts as
whitespace (RE2's `\s` is ASCII only; `\p{Z}` adds the no-break and ideographic spaces that
Chinese spreadsheets carry) and the hyphen."""


def _org_value(ch: str) -> int:
    return int(ch) if ch.isdigit() else ord(ch) - ord("A") + 10


def org_check_digit(body: str) -> str:
    """GB 11714 check digit of the 8-character organisation-code body."""
    total = sum(_org_value(c) * w for c, w in zip(body, ORG_WEIGHTS, strict=True))
    c = 11 - total % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


def check_character(first17: str) -> str:
    """GB 32100 check character of the first 17 characters."""
    total = sum(CHARSET.index(c) * w for c, w in zip(first17, CHECK_WEIGHTS, strict=True))
    return CHARSET[(31 - total % 31) % 31]


def validate(code: str) -> str:
    """Return the compacted code if valid, else raise `InvalidUSCC` saying exactly what is wrong."""
    if not isinstance(code, str):
        raise InvalidUSCC("type", f"code must be text, got {type(code).__name__}")
    c = compact(code)
    if len(c) != 18:
        raise InvalidUSCC("length", f"code must have 18 characters, got {len(c)}")
    for i, ch in enumerate(c, start=1):
        if ch not in CHARSET:
            raise InvalidUSCC(
                "charset",
                f"character {ch!r} at position {i} is not allowed "
                "(only 0-9 and A-Y without I, O, Z, S, V)",
            )
    authority, category = c[0], c[1]
    if authority not in AUTHORITY_CATEGORIES:
        raise InvalidUSCC(
            "authority", f"registration authority code {authority!r} is not allocated"
        )
    if category not in AUTHORITY_CATEGORIES[authority]:
        allowed = ", ".join(AUTHORITY_CATEGORIES[authority])
        raise InvalidUSCC(
            "category",
            f"organisation category {category!r} is not allocated under authority "
            f"{authority!r} (allowed: {allowed})",
        )
    region = c[2:8]
    if not region.isdigit():
        raise InvalidUSCC("region", f"region code {region!r} must be 6 digits")
    if int(region[:2]) not in PROVINCES:
        raise InvalidUSCC(
            "region", f"region code {region!r} starts with {region[:2]}, which is not a province"
        )
    org_expected = org_check_digit(c[8:16])
    if c[16] != org_expected:
        raise InvalidUSCC(
            "org_check",
            f"organisation-code check digit (position 17) should be {org_expected}, got {c[16]}",
        )
    expected = check_character(c[:17])
    if c[17] != expected:
        raise InvalidUSCC("check", f"check character should be {expected}, got {c[17]}")
    if is_resident_id(c):
        raise InvalidUSCC(
            "resident_id",
            "this is a resident identity card number (GB 11643: province, date of birth and "
            "check digit fit), not a credit code: a natural person is never scored; an "
            "individual business has its own code starting 92",
        )
    return c


def is_resident_id(code: str) -> bool:
    """Whether `code` (compacted) is a valid resident identity card number (GB 11643)."""
    if len(code) != 18 or not all("0" <= ch <= "9" for ch in code[:17]):
        return False
    if code[17] not in "0123456789X" or int(code[:2]) not in ID_PROVINCES:
        return False
    try:
        born = date(int(code[6:10]), int(code[10:12]), int(code[12:14]))
    except ValueError:
        return False
    if not date(1900, 1, 1) <= born <= china_today():
        return False
    total = sum(int(ch) * w for ch, w in zip(code[:17], ID_WEIGHTS, strict=True))
    return ID_CHECK[total % 11] == code[17]


def is_valid(code: str) -> bool:
    try:
        validate(code)
    except InvalidUSCC:
        return False
    return True


# ---- vectorised -------------------------------------------------------------------------------

_VALUE = np.full(256, -1, dtype=np.int16)
for _i, _ch in enumerate(CHARSET):
    _VALUE[ord(_ch)] = _i
_ORG_VALUE = np.full(256, 0, dtype=np.int16)
for _ch in CHARSET:
    _ORG_VALUE[ord(_ch)] = _org_value(_ch)
_ALLOWED_PAIR = np.zeros((31, 31), dtype=bool)
for _a, _cats in AUTHORITY_CATEGORIES.items():
    for _c in _cats:
        _ALLOWED_PAIR[CHARSET.index(_a), CHARSET.index(_c)] = True
_PROVINCE_OK = np.zeros(100, dtype=bool)
_PROVINCE_OK[list(PROVINCES)] = True
_ORG_CHECK_VALUE = np.array([CHARSET.index(str(c)) for c in range(10)] + [CHARSET.index("X")])


def valid_mask(codes: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Boolean mask of valid codes (already compacted; nulls are invalid). Vectorised over bytes."""
    if isinstance(codes, pa.ChunkedArray):
        codes = codes.combine_chunks() if codes.num_chunks else pa.array([], pa.string())
    if not pa.types.is_string(codes.type):
        codes = codes.cast(pa.string())
    n = len(codes)
    if n == 0:
        return np.zeros(0, dtype=bool)
    offsets = np.frombuffer(codes.buffers()[1], dtype=np.int32)[codes.offset : codes.offset + n + 1]
    length_ok = np.diff(offsets) == 18
    if codes.null_count:
        length_ok &= ~pc.is_null(codes).to_numpy(zero_copy_only=False)
    if not length_ok.all():
        ok = np.zeros(n, dtype=bool)
        idx = np.flatnonzero(length_ok)
        if len(idx):
            ok[idx] = valid_mask(codes.take(pa.array(idx)))
        return ok
    values = np.frombuffer(codes.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    rows = values.reshape(n, 18)
    # in slices: small working arrays stay in cache and are reused, instead of page-faulting in
    # hundreds of MB of fresh memory for a whole file at once
    return np.concatenate([_valid_rows(rows[i : i + _SLICE]) for i in range(0, n, _SLICE)])


_SLICE = 1 << 16


def _valid_rows(rows: np.ndarray, refuse_ids: bool = True) -> np.ndarray:
    """Validity of codes given as an (n, 18) array of ASCII bytes (`refuse_ids=False`: the
    code checks alone, identity numbers passing them included)."""
    n = rows.shape[0]
    raw = np.ascontiguousarray(rows.T)  # one contiguous row per position
    val = _VALUE[raw]  # int16, -1 outside the charset
    good = np.asarray((val >= 0).all(axis=0), dtype=bool)
    np.maximum(val, 0, out=val)
    good &= _ALLOWED_PAIR[val[0], val[1]]
    good &= (val[2:8] < 10).all(axis=0)
    good &= _PROVINCE_OK[(val[2] * 10 + val[3]) % 100]
    org = np.zeros(n, dtype=np.int16)
    for i, w in enumerate(ORG_WEIGHTS):
        org += _ORG_VALUE[raw[8 + i]] * w
    org_c = 11 - org % 11
    good &= _ORG_CHECK_VALUE[np.where(org_c == 11, 0, org_c)] == val[16]
    total = np.zeros(n, dtype=np.int16)
    for i, w in enumerate(CHECK_WEIGHTS):
        total += val[i] * w  # at most 17 * 30 * 30 < 2**15
    good &= (31 - total % 31) % 31 == val[17]
    if refuse_ids:  # only codes starting with two digits of a province can be identity numbers
        maybe = good & _ID_PROVINCE_OK[(val[0] * 10 + val[1]) % 100] & (val[0] < 10)
        few = np.flatnonzero(maybe) if maybe.sum() * 8 < n else None
        if few is None:  # many (a file of institutions): the whole slice at once
            good &= ~(maybe & _resident_ids(raw, val))
        elif len(few):  # few or none (enterprises, 91–93, never are)
            good[few] &= ~_resident_ids(raw[:, few], val[:, few])
    return good


_ID_PROVINCE_OK = np.zeros(100, dtype=bool)
_ID_PROVINCE_OK[list(ID_PROVINCES)] = True
_ID_CHECK_VALUE = np.array([CHARSET.index(ch) for ch in ID_CHECK])
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _resident_ids(raw: np.ndarray, val: np.ndarray) -> np.ndarray:
    """`is_resident_id` over codes given by position (`raw` bytes, `val` CHARSET values >= 0)."""
    v = val.astype(np.int32)
    digits = (v[:17] < 10).all(axis=0)
    ok = digits & _ID_PROVINCE_OK[(v[0] * 10 + v[1]) % 100]
    year = v[6] * 1000 + v[7] * 100 + v[8] * 10 + v[9]
    month = v[10] * 10 + v[11]
    day = v[12] * 10 + v[13]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    days = _MONTH_DAYS[np.clip(month, 0, 12)] + ((month == 2) & leap)
    today = china_today()
    ok &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= days) & (year >= 1900)
    ok &= year * 10_000 + month * 100 + day <= today.year * 10_000 + today.month * 100 + today.day
    total = np.zeros(v.shape[1], dtype=np.int32)
    for k, w in enumerate(ID_WEIGHTS):
        total += v[k] * w
    ok &= _ID_CHECK_VALUE[total % 11] == v[17]  # 'X' has its CHARSET value; letters else fail
    return np.asarray(ok, dtype=bool)


# ---- generation -------------------------------------------------------------------------------

_BODY_CHARS = np.frombuffer(CHARSET.encode(), dtype=np.uint8)


def _finish(first16: np.ndarray) -> list[str]:
    """Append org check digit and check character to rows of 16 ASCII bytes; return strings."""
    n = first16.shape[0]
    org = (_ORG_VALUE[first16[:, 8:16]] * np.array(ORG_WEIGHTS, dtype=np.int16)).sum(axis=1)
    org_c = 11 - org % 11
    org_val = _ORG_CHECK_VALUE[np.where(org_c == 11, 0, org_c)]
    full = np.empty((n, 18), dtype=np.uint8)
    full[:, :16] = first16
    full[:, 16] = _BODY_CHARS[org_val]
    val = _VALUE[full[:, :17]].astype(np.int32)
    total = (val * np.array(CHECK_WEIGHTS, dtype=np.int32)).sum(axis=1)
    full[:, 17] = _BODY_CHARS[(31 - total % 31) % 31]
    return full.view("S18").ravel().astype(str).tolist()


def generate_many(
    rng: np.random.Generator,
    kinds: Sequence[str] | np.ndarray,
    regions: Sequence[str] | np.ndarray,
) -> list[str]:
    """Valid, distinct codes, one per (kind, region): kind = authority + category, e.g. "91".

    Organisation-code bodies are random in the style of post-2015 codes ("MA" + 6 symbols) for
    a third of them and all-digit for the rest; duplicates are redrawn so every code is distinct,
    and so are the rare codes that are also resident identity numbers.
    """
    kinds = np.asarray(kinds, dtype="S2")
    regions = np.asarray(regions, dtype="S6")
    n = len(kinds)
    head = np.empty((n, 16), dtype=np.uint8)
    head[:, :2] = kinds.view(np.uint8).reshape(n, 2)
    head[:, 2:8] = regions.view(np.uint8).reshape(n, 6)
    todo = np.arange(n)
    seen: set[str] = set()
    out: list[str] = [""] * n
    while len(todo):
        m = len(todo)
        body = _BODY_CHARS[rng.integers(0, 31, size=(m, 8))]
        digits = rng.random(m) < 2 / 3
        body[digits] = _BODY_CHARS[rng.integers(0, 10, size=(int(digits.sum()), 8))]
        body[~digits, 0] = ord("M")
        body[~digits, 1] = ord("A")
        head[todo, 8:16] = body
        codes = _finish(head[todo])
        retry = []
        for i, code in zip(todo.tolist(), codes, strict=True):
            if code in seen or is_resident_id(code):  # an identity number is no credit code
                retry.append(i)
            else:
                seen.add(code)
                out[i] = code
        todo = np.array(retry, dtype=np.int64)
    return out


def generate(rng: np.random.Generator, kind: str = "91", region: str = "410100") -> str:
    """One valid code of the given kind (authority + category) and region."""
    return generate_many(rng, [kind], [region])[0]


def derive(source_id: str, namespace: str, kind: str = "91", region: str = "110000") -> str:
    """A deterministic valid code standing in for a foreign id (real data sets without codes).

    The organisation-code body is taken from SHA-256(namespace/id), so the same id always maps
    to the same code and different ids collide with probability about n²/2·31⁸.
    """
    digest = hashlib.sha256(f"{namespace}/{source_id}".encode()).digest()
    while True:
        body = "".join(CHARSET[b % 31] for b in digest[:8])
        first16 = np.frombuffer((kind + region + body).encode(), dtype=np.uint8).reshape(1, 16)
        code = _finish(first16)[0]
        if not is_resident_id(code):  # an identity number is no credit code: hash again
            return code
        digest = hashlib.sha256(digest).digest()
