"""API keys and the role matrix.

A key is `cs_` + 43 URL-safe characters (256 random bits), shown once at creation and stored as
its SHA-256 hash. Roles (../shared/DOMAIN.md §1, §10):

- admin: full company view, history, all records, summary, audit log, model reload, keys.
- regulator, analyst: full company view, history, all records, summary.
- department: full company view, history, summary; records: the public ones and its own (of
  other departments' records only the non-personal attributes the public page shows); a tier
  reason resting on records of a category the catalogue does not share is shown without its
  evidence.
- company: speaks for one company (`uscc`): its own full view, history and records, and its own
  repair applications, objections and list entries (another company's cases and entries are
  unknown to it, 404); applies for repair of and objects to its own records and listings;
  other companies as the public sees them.
- public: the public view (masked); records public on the day, masked; no history or summary.

"Full" is score, grade, dimension points, tier, probability, reasons (zh/en) and versions; the
public view is what DOMAIN §9–§10 let anyone see: the public credit evaluation (score and grade)
and the open-objection flag, with an individual business's name masked. Non-public roles must
say why they read a company's credit information (`X-Purpose`), which goes to the audit log.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.reasons import DEPARTMENTS
from records import uscc as codes
from records.store import Store
from serving.db import api_keys

Role = Literal["admin", "regulator", "department", "analyst", "company", "public", "operator"]
"""`operator`: someone at the command line (the audit log's role for its reads; no key has it)."""
ROLES: tuple[Role, ...] = ("admin", "regulator", "department", "analyst", "company", "public")
FULL_VIEW = frozenset({"admin", "regulator", "analyst", "department"})
HISTORY = FULL_VIEW
SUMMARY = FULL_VIEW
ADMIN = frozenset({"admin"})
AUTHORITIES = frozenset({"admin", "regulator"})
"""Who decides repairs, objections and listings, and may file on a company's behalf."""
NO_PURPOSE = frozenset({"public", "company"})
"""Roles that read without declaring a purpose (the public, a company about itself or others'
public information)."""


@dataclass(frozen=True)
class Caller:
    key_id: int
    role: Role
    department: str | None
    name: str | None
    uscc: str | None = None
    """The company a `company` key speaks for."""

    def is_company(self, uscc: str) -> bool:
        """The key speaks for this company."""
        return self.role == "company" and self.uscc == uscc

    def sees_fully(self, uscc: str) -> bool:
        """The full view of this company: the authorities, or the company itself."""
        return self.role in FULL_VIEW or self.is_company(uscc)

    def acts_for(self, uscc: str) -> bool:
        """May apply, object or file for this company: the company itself or an authority."""
        return self.role in AUTHORITIES or self.is_company(uscc)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def known_department(department: str, departments: Iterable[str] = ()) -> str:
    """The department's code as records name it: one of the departments the service knows
    (`models.reasons.DEPARTMENTS`, and `departments`, e.g. those that sent records), matched
    case-insensitively and without surrounding spaces; anything else is refused, naming them."""
    known = {code.lower(): code for code in (*DEPARTMENTS, *departments)}
    found = known.get(department.strip().lower())
    if found is None:
        raise ValueError(f"unknown department {department!r}: known are "
                         f"{', '.join(sorted(set(known.values())))}")  # fmt: skip
    return found


def record_departments(store: Store) -> list[str]:
    """The departments that sent the records in the store (a province's own codes)."""
    with store.connect() as con:
        rows = con.execute(
            "SELECT DISTINCT source_dept FROM records WHERE source_dept IS NOT NULL"
        ).fetchall()
    return sorted(str(d) for (d,) in rows)


def create_key(
    engine: Engine,
    role: str,
    department: str | None,
    name: str | None,
    uscc: str | None = None,
    departments: Iterable[str] = (),
) -> str:
    """Store a new key and return it (the only time it is visible). A department key's
    department must be known (`known_department`; `departments` adds to the service's own)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    if role == "department" and not department:
        raise ValueError("a department key needs --department")
    if department:
        department = known_department(department, departments)
    if role == "company":
        if not uscc:
            raise ValueError("a company key needs --uscc (the company it speaks for)")
        uscc = codes.validate(uscc)
    elif uscc:
        raise ValueError("--uscc is for company keys only")
    key = "cs_" + secrets.token_urlsafe(32)
    with engine.begin() as con:
        con.execute(
            api_keys.insert().values(
                key_hash=hash_key(key),
                prefix=key[:10],
                role=role,
                department=department,
                uscc=uscc,
                name=name,
                created_at=datetime.now(UTC),
            )
        )
    return key


def revoke_key(engine: Engine, key_or_prefix: str) -> int:
    """Revoke a key named by its first 10 characters (as `credsup keys list` shows them) or
    given whole (matched by its hash); the number of keys revoked."""
    text = key_or_prefix.strip()
    which = api_keys.c.key_hash == hash_key(text) if len(text) > 12 else api_keys.c.prefix == text
    with engine.begin() as con:
        result = con.execute(
            api_keys.update()
            .where(which, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        return int(result.rowcount)


def list_keys(engine: Engine) -> list[dict[str, Any]]:
    """Every key without its secret: prefix, role, department, company, holder, created and
    revoked (oldest first)."""
    columns = [api_keys.c[c] for c in ("id", "prefix", "role", "department", "uscc", "name",
                                       "created_at", "revoked_at")]  # fmt: skip
    with engine.connect() as con:
        rows = con.execute(sa.select(*columns).order_by(api_keys.c.id)).mappings().all()
    return [dict(r) for r in rows]


class KeyCache:
    """Key look-ups without a database round trip per request: all keys are reloaded every
    `ttl` seconds, and a key not in the cache is looked up on its own (an indexed read), so a
    new key works at once; a revoked key stops working within `ttl` seconds."""

    def __init__(self, engine: Engine, ttl: float = 30.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self._keys: dict[str, Caller] = {}
        self._loaded = 0.0

    def _load(self) -> None:
        with self.engine.connect() as con:
            rows = con.execute(
                sa.select(api_keys.c.id, api_keys.c.key_hash, api_keys.c.role,
                          api_keys.c.department, api_keys.c.name, api_keys.c.uscc)
                .where(api_keys.c.revoked_at.is_(None))
            ).all()  # fmt: skip
        self._keys = {r.key_hash: Caller(r.id, r.role, r.department, r.name, r.uscc) for r in rows}
        self._loaded = time.monotonic()

    def get(self, key: str | None) -> Caller | None:
        if not key:
            return None
        digest = hash_key(key)
        if time.monotonic() - self._loaded > self.ttl:
            self._load()
        found = self._keys.get(digest)
        if found is None:  # perhaps a key created since the last load: one indexed read
            found = self._one(digest)
            if found is not None:
                self._keys[digest] = found
        return found

    def _one(self, digest: str) -> Caller | None:
        with self.engine.connect() as con:
            r = con.execute(
                sa.select(api_keys.c.id, api_keys.c.role, api_keys.c.department, api_keys.c.name,
                          api_keys.c.uscc)
                .where(api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None))
            ).first()  # fmt: skip
        return None if r is None else Caller(r.id, r.role, r.department, r.name, r.uscc)
