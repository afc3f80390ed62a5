"""Today's date as the records are dated: in China Standard Time (UTC+8).

The one clock of the service: the machine's own date (`date.today()`) is yesterday's from 00:00
to 08:00 in China when its clock runs in UTC. A module of its own, so that light modules
(`records.uscc`) need not load the holiday calendar `records.workdays` builds.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

CHINA = timezone(timedelta(hours=8), "China Standard Time")


def china_today() -> date:
    """Today in China Standard Time (UTC+8), the calendar records and as-of dates are dated in
    (the machine's clock may run in UTC: from 00:00 to 08:00 in China its date is yesterday)."""
    return datetime.now(CHINA).date()
