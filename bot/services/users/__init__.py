"""Panel users: accounts, API tokens, store scope and the permission policy, the audit log."""
