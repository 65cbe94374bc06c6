"""Brand-data jobs: the nightly full RFM recompute (quintiles taken again, every customer scored on them,
recency moved on by a day)."""

from __future__ import annotations

from typing import Any

from bot.extensions import db
from bot.jobs.context import job_context
from bot.jobs.periodic import PeriodicJob
from bot.services.commerce import values


def recompute_rfm() -> dict[str, Any]:
    """Every customer's purchase summary and RFM scores, from the orders."""
    with job_context():
        try:
            result = values.recompute_all()
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        return {"customers": result["customers"], "scored": result["scored"]}


PERIODIC_JOBS = (PeriodicJob(recompute_rfm, "cron", {"hour": 2, "minute": 30}),)
