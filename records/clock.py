"""Today's date as the records are dated: in China Standard Time (UTC+8).

The one clock of the service: the machine's own date (`date.today()`) is yesterday's from 00:00
to 08:00 in China when its clock runs in UTC. A module of its own, so that light modules
(`records.uscc`) need not load the holiday calendar `records.workdays` builds.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

CHINA_STANDARD_TIME = "+08:00"
"""Time stamps with a time zone are read as the wall-clock time in China (UTC+8, no daylight
saving since 1991): a decision taken on 5 January in Beijing is dated 5 January, even when an
export stores it as 2024-01-04 16:00 UTC. (The Arrow spelling; `CHINA` is the same zone.)"""

CHINA = timezone(timedelta(hours=8), "China Standard Time")


def china_today() -> date:
    """Today in China Standard Time (UTC+8), the calendar records and as-of dates are dated in
    (the machine's clock may run in UTC: from 00:00 to 08:00 in China its date is yesterday)."""
    return datetime.now(CHINA).date()
