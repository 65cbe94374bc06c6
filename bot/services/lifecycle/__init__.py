"""Lifecycle rules: triggers meet customers, tasks record what was done, actions remind, send, tag and notify."""
