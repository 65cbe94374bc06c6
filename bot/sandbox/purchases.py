"""The brand's own systems in the sandbox: a customer buying in their member's store, and the brand's order
system sending the order to Siyu's API (``POST /api/v1/orders``) as a real one would — a batch of one, by
external_userid, the member named on one order in three — so that sales, targets and purchase-triggered rules
move on ``make run``."""

from __future__ import annotations

import random
import secrets
from datetime import UTC, datetime

import requests

from bot.sandbox.corp import Contact, FakeCorp


def someone_buys(
    corp: FakeCorp,
    rng: random.Random,
    relation: tuple[Contact, str] | None,
    brand_api: tuple[str, str],
    http: requests.Session,
    timeout: float,
) -> str | None:
    """The customer of ``relation`` (a contact and their member) buys; ``brand_api`` is the orders URL and an
    API token. What happened, for the log; None when nobody is there to buy."""
    if relation is None:
        return None
    contact, userid = relation
    with corp.lock:
        department = corp.users[userid].get("main_department") or 1
    amount = rng.choice([39, 69, 129, 199, 299, 599, 1299])
    row = {
        "order_no": f"SIM-{secrets.token_hex(6)}",
        "external_userid": contact.external_userid,
        "store": department,
        "staff": userid if rng.random() < 0.33 else "",
        "amount": amount,
        "paid_at": datetime.now(UTC).isoformat(),
    }
    url, token = brand_api
    answer = http.post(url, json={"rows": [row]}, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    return f"{contact.name} bought ¥{amount} at store {department} ({answer.status_code})"
