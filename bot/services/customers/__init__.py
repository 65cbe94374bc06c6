"""Customers and their follow relations as WeCom reports them, the full sync, and growth figures (adds,
losses, retention)."""
