"""The base of every policy file's pydantic model (catalogue, mappings, scorecard)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo in a policy file must not pass silently); frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
