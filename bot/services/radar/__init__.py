"""Radar links (雷达链接): tracked library links sent as Siyu's own ``/r/<token>``, their opens recorded off the
request path, and what an open does — the serving member told, the customer tagged, an interaction."""
