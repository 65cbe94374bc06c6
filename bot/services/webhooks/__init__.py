"""Webhooks out: what happens on WeCom, pushed to the brand's own systems (CRM, mall, data platform).

- ``events``: the event types and the JSON each one carries (documented in the OpenAPI document).
- ``outbox``: listens to ``signals.happened``; writes the event and one delivery per subscribed endpoint in
  the transaction of what happened, and wakes a sender once that commits.
- ``endpoints``: the endpoints admins register (URL checked against server-side request forgery), their
  signing secrets (shown once, rotated with an overlap) and the delivery log, replay and test events.
- ``sending``: signs and posts deliveries in order per customer, retries with backoff for a day, switches
  a dead endpoint off and tells its people.
- ``jobs``: the sender job and the sweep that retries and prunes.
"""
