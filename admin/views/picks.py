"""The pickers' server side: suggestions as the user types, a shortcut expanded (a whole store's members, a
tag group's tags), and a pasted list read in bulk with the ids it does not know. All scoped to the user
(``admin.pickers``), read only."""

from __future__ import annotations

from flask import abort, jsonify, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from admin import pickers
from admin.views import bp


def _kind(kind: str) -> pickers.Kind:
    if kind not in pickers.KINDS:
        abort(404)
    return pickers.KINDS[kind]


@bp.get("/pick/<kind>")
def pick(kind: str) -> ResponseReturnValue:
    """``q``: the text typed; ``expand``: a shortcut ("store:<id>" for members, "group:<group_id>" for tags)."""
    found = _kind(kind)
    expand = request.args.get("expand", "")
    if expand:
        what, _sep, key = expand.partition(":")
        if kind == "members" and what == "store" and key in pickers.labels("stores", current_user, [key]):
            return jsonify(results=[o.as_json() for o in pickers.search_members(current_user, "", store_id=int(key))])
        if kind == "tags" and what == "group" and key:
            return jsonify(results=[o.as_json() for o in pickers.search_tags(current_user, "", group_id=key)])
        abort(404)
    results = found.search(current_user, request.args.get("q", ""))
    return jsonify(results=[o.as_json() for o in results])


@bp.post("/pick/<kind>/check")
def check_pasted(kind: str) -> ResponseReturnValue:
    """A pasted list (the form field ``ids``): how many ids are known, and which are not (the first 200)."""
    _kind(kind)
    ids = pickers.split_ids(request.form.get("ids", ""))
    if len(ids) > pickers.MAX_PASTED:
        return jsonify(error=_("最多 %(n)s 个", n=f"{pickers.MAX_PASTED:,}"), known=0, unknown=[]), 400
    known, unknown = pickers.check(kind, current_user, ids)
    message = pickers.refusal(kind, unknown) if unknown else _("%(n)s 个都可以使用", n=len(known))
    return jsonify(known=len(known), unknown=unknown[:200], unknown_count=len(unknown), message=message)
