"""The use cases: the only layer that writes the database or calls ``bot.wecom``.

Services flush; the boundary that called them (request, job, CLI command) commits once.
"""
