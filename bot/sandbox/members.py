"""What members do in their WeCom client that Siyu cannot see directly: confirming a mass-send task."""

from __future__ import annotations

from collections import deque

from bot.sandbox.corp import FakeCorp, MassTask


def confirm_mass_task(corp: FakeCorp, msgid: str) -> MassTask:
    """The member taps "send" in their client: deliver, within each customer's cap."""
    with corp.lock:
        task = corp.mass_tasks[msgid]
        if task.confirmed or task.cancelled:
            return task
        task.confirmed = True
        now = corp.clock()
        task.confirmed_at = now
        for r in task.recipients:
            if task.chat_type == "group":
                group = corp.groups.get(r)
                if group is None or group.dismissed:
                    task.results[r] = 2  # the group is gone
                    continue
            elif (contact := corp.contacts.get(r)) is None or task.sender not in contact.follows:
                task.results[r] = 2  # no longer a friend
                continue
            received = corp.mass_received.setdefault(r, deque())
            while received and now - received[0] > corp.mass_cap_period:
                received.popleft()
            if len(received) >= corp.mass_cap:
                task.results[r] = 3  # already received its quota of corp mass messages
            else:
                received.append(now)
                task.results[r] = 1
        return task
