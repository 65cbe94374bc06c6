"""The fake WeCom HTTP API: the endpoints Siyu calls, answering as WeCom documents them.

``app`` serves them (``create_fake_wecom``); each family of WeCom's API is a module beside it.
"""
