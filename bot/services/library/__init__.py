"""The content library (素材库) and quick replies (话术库): items in folders with tags and a store scope
(``items``, ``folders``), scripts with variables (``replies``), what a member's client sends and what
welcome messages attach (``messages``), and which content members use (``usage``)."""
