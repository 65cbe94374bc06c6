"""GET /api/v1/openapi.json: the API's OpenAPI 3.1 description (public, no token needed)."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue

from admin.api import bp


def _page_params() -> list[dict[str, Any]]:
    return [
        {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
        {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
    ]


def _json(schema_ref: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}}


ERRORS = {
    "400": {"description": "Invalid parameter", **_json("Error")},
    "401": {"description": "Missing, unknown, revoked or expired token", **_json("Error")},
}
#: tag changes: WeCom's refusals (duplicate name, the 3000-tag cap, another app's tag) are 400 with the field
TAG_ERRORS = {
    **ERRORS,
    "403": {"description": "Needs the admin or operator role", **_json("Error")},
    "502": {"description": "WeCom refused for another reason", **_json("Error")},
}

TAG = {
    "type": "object",
    "properties": {
        "tag_id": {"type": ["string", "null"]},
        "group_name": {"type": "string"},
        "tag_name": {"type": "string"},
        "type": {"type": "integer", "description": "1 corp tag, 2 personal tag, 3 rule-group tag"},
    },
}

SEGMENT_ID: dict[str, Any] = {"name": "segment_id", "in": "path", "required": True, "schema": {"type": "integer"}}
NOT_FOUND = {**ERRORS, "404": {"description": "Not found", **_json("Error")}}
SEND_ID: dict[str, Any] = {"name": "send_id", "in": "path", "required": True, "schema": {"type": "integer"}}
#: mass sends: 403 for a role that may not, 409 for a send in the wrong state (e.g. approving a done one)
SEND_ERRORS = {
    **NOT_FOUND,
    "403": {"description": "Not allowed for your role", **_json("Error")},
    "409": {"description": "Not possible in the send's current state", **_json("Error")},
}
RULE_ID: dict[str, Any] = {"name": "rule_id", "in": "path", "required": True, "schema": {"type": "integer"}}
RULE_ERRORS = {**NOT_FOUND, "403": {"description": "Not allowed for your role", **_json("Error")}}
GROUP_ID: dict[str, Any] = {"name": "group_id", "in": "path", "required": True, "schema": {"type": "integer"}}
WAY_ID: dict[str, Any] = {"name": "way_id", "in": "path", "required": True, "schema": {"type": "integer"}}
INVITE_ID: dict[str, Any] = {"name": "invite_id", "in": "path", "required": True, "schema": {"type": "integer"}}
#: join codes and campaigns: WeCom's refusals (an unknown group, the code quota) come back as 502
WECOM_ERRORS = {**RULE_ERRORS, "502": {"description": "WeCom refused", **_json("Error")}}
WECOM_ID: dict[str, Any] = {"name": "wecom_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


WINDOW: list[dict[str, Any]] = [
    {"name": "days", "in": "query", "schema": {"type": "integer", "enum": [7, 30, 90]}},
    {"name": "start", "in": "query", "schema": {"type": "string", "format": "date"}},
    {"name": "end", "in": "query", "schema": {"type": "string", "format": "date"}},
]

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Siyu (私域助手) API", "version": "1"},
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearer": []}],
    "paths": {
        "/customers": {
            "get": {
                "summary": "List customers, newest first",
                "parameters": _page_params()
                + [
                    {
                        "name": "q",
                        "in": "query",
                        "schema": {"type": "string", "maxLength": 64},
                        "description": "part of the customer's name",
                    },
                    {
                        "name": "staff",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "only customers followed by this member (userid)",
                    },
                ],
                "responses": {"200": {"description": "A page of customers", **_json("CustomerPage")}, **ERRORS},
            }
        },
        "/customers/{external_userid}": {
            "get": {
                "summary": "A customer's profile, followers and tags",
                "parameters": [
                    {"name": "external_userid", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "The customer", **_json("Customer")},
                    "404": {"description": "No such customer", **_json("Error")},
                    **ERRORS,
                },
            },
            "patch": {
                "summary": "Set the birthday (YYYY-MM-DD, MM-DD or null) and notes",
                "parameters": [
                    {"name": "external_userid", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "requestBody": {
                    "required": True,
                    **_json_schema(
                        {
                            "type": "object",
                            "properties": {
                                "birthday": {"type": ["string", "null"]},
                                "notes": {"type": "string", "maxLength": 2000},
                            },
                        }
                    ),
                },
                "responses": {"200": {"description": "The customer", **_json("Customer")}, **RULE_ERRORS},
            },
        },
        "/customers/birthdays": {
            "post": {
                "summary": "Import birthdays: JSON rows [{external_userid, birthday}] or a CSV file (multipart `file`)",
                "requestBody": {
                    "required": True,
                    **_json_schema(
                        {
                            "type": "object",
                            "properties": {"rows": {"type": "array", "maxItems": 100000, "items": {"type": "object"}}},
                        }
                    ),
                },
                "responses": {"200": {"description": "rows, updated, unchanged, problems, first_problems"}, **ERRORS},
            }
        },
        "/events": {
            "get": {
                "summary": "Stored WeCom callback events, newest first",
                "parameters": _page_params()
                + [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["pending", "done", "failed", "dead", "skipped"]},
                    },
                ],
                "responses": {"200": {"description": "A page of events", **_json("EventPage")}, **ERRORS},
            }
        },
        "/events/{event_id}/retry": {
            "post": {
                "summary": "Retry a failed or dead event",
                "parameters": [{"name": "event_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {
                    "202": {"description": "Queued again"},
                    "404": {"description": "No such event", **_json("Error")},
                    "409": {"description": "The event is not failed or dead", **_json("Error")},
                    **ERRORS,
                },
            }
        },
        "/channels": {
            "get": {
                "summary": "Channel codes (渠道活码) with their statistics over 7/30/90 days or start..end",
                "parameters": WINDOW,
                "responses": {"200": {"description": "The channels", **_json("ChannelList")}, **ERRORS},
            },
            "post": {
                "summary": "Create a channel code (a WeCom 「联系我」 contact way)",
                "requestBody": {"required": True, **_json("ChannelInput")},
                "responses": {
                    "201": {"description": "Created", **_json("Channel")},
                    "403": {"description": "Needs the admin or operator role", **_json("Error")},
                    "502": {"description": "WeCom refused", **_json("Error")},
                    **ERRORS,
                },
            },
        },
        "/channels/{channel_id}": {
            "parameters": [{"name": "channel_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "get": {
                "summary": "One channel, its statistics and the welcome variants' split",
                "parameters": WINDOW,
                "responses": {
                    "200": {"description": "The channel", **_json("Channel")},
                    "404": {"description": "No such channel", **_json("Error")},
                    **ERRORS,
                },
            },
            "patch": {
                "summary": "Change any field but the state; expires_at and daily_cap may be null (no limit)",
                "requestBody": {"required": True, **_json("ChannelInput")},
                "responses": {
                    "200": {"description": "Changed", **_json("Channel")},
                    "403": {"description": "Needs the admin or operator role", **_json("Error")},
                    "404": {"description": "No such channel", **_json("Error")},
                    "502": {"description": "WeCom refused", **_json("Error")},
                    **ERRORS,
                },
            },
            "delete": {
                "summary": "Delete the code in WeCom; the channel stays, inactive, for attribution",
                "responses": {
                    "200": {"description": "Deleted"},
                    "403": {"description": "Needs the admin or operator role", **_json("Error")},
                    "404": {"description": "No such channel", **_json("Error")},
                    **ERRORS,
                },
            },
        },
        "/channels/{channel_id}/qr.png": {
            "parameters": [{"name": "channel_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "get": {
                "summary": "The code as a PNG image",
                "responses": {
                    "200": {"description": "PNG", "content": {"image/png": {}}},
                    "404": {"description": "No such channel", **_json("Error")},
                    "409": {"description": "The channel has no usable code", **_json("Error")},
                    "502": {"description": "WeCom refused", **_json("Error")},
                    **ERRORS,
                },
            },
        },
        "/tag-groups": {
            "get": {
                "summary": "The corp tag library: groups with their tags",
                "responses": {"200": {"description": "Groups", **_json("TagGroupList")}, **ERRORS},
            },
            "post": {
                "summary": "A new tag group with its first tags, made in WeCom first (add_corp_tag)",
                "requestBody": {
                    "required": True,
                    **_json_schema(
                        {
                            "type": "object",
                            "required": ["name", "tags"],
                            "properties": {
                                "name": {"type": "string", "maxLength": 30},
                                "tags": {"type": "array", "items": {"type": "string", "maxLength": 30}},
                            },
                        }
                    ),
                },
                "responses": {"201": {"description": "Created", **_json("TagGroup")}, **TAG_ERRORS},
            },
        },
        "/tag-groups/{wecom_id}": {
            "parameters": [WECOM_ID],
            "patch": {
                "summary": "Rename or reorder a group (edit_corp_tag)",
                "requestBody": {"required": True, **_json("TagEdit")},
                "responses": {"200": {"description": "Changed"}, **TAG_ERRORS},
            },
            "delete": {
                "summary": "Delete a group and its tags (del_corp_tag)",
                "responses": {"200": {"description": "Deleted"}, **TAG_ERRORS},
            },
        },
        "/tags": {
            "post": {
                "summary": "Tags in an existing group (add_corp_tag)",
                "requestBody": {
                    "required": True,
                    **_json_schema(
                        {
                            "type": "object",
                            "required": ["group_id", "names"],
                            "properties": {
                                "group_id": {"type": "string"},
                                "names": {"type": "array", "items": {"type": "string", "maxLength": 30}},
                            },
                        }
                    ),
                },
                "responses": {"201": {"description": "Created"}, **TAG_ERRORS},
            },
        },
        "/tags/{wecom_id}": {
            "parameters": [WECOM_ID],
            "patch": {
                "summary": "Rename or reorder a tag (edit_corp_tag)",
                "requestBody": {"required": True, **_json("TagEdit")},
                "responses": {"200": {"description": "Changed"}, **TAG_ERRORS},
            },
            "delete": {
                "summary": "Delete a tag (del_corp_tag); customers lose it in the mirror too",
                "responses": {"200": {"description": "Deleted"}, **TAG_ERRORS},
            },
        },
        "/customers/{external_userid}/tags": {
            "parameters": [{"name": "external_userid", "in": "path", "required": True, "schema": {"type": "string"}}],
            "post": {
                "summary": "Add and remove corp tags on a customer's follow relation (mark_tag)",
                "requestBody": {
                    "required": True,
                    **_json_schema(
                        {
                            "type": "object",
                            "properties": {
                                "staff": {"type": "string", "description": "needed when several members follow"},
                                "add": {"type": "array", "items": {"type": "string"}},
                                "remove": {"type": "array", "items": {"type": "string"}},
                            },
                        }
                    ),
                },
                "responses": {
                    "200": {"description": "The relation's tags now"},
                    "403": {"description": "Outside your scope, or a viewer", **_json("Error")},
                    "404": {"description": "No such customer", **_json("Error")},
                    **TAG_ERRORS,
                },
            },
        },
        "/tag-jobs": {
            "post": {
                "summary": "Tag or untag many customers (a segment or a list of external ids), in a worker",
                "requestBody": {
                    "required": True,
                    **_json_schema(
                        {
                            "type": "object",
                            "required": ["action", "tag_ids"],
                            "properties": {
                                "action": {"type": "string", "enum": ["add", "remove"]},
                                "tag_ids": {"type": "array", "items": {"type": "string"}},
                                "segment_id": {"type": "integer"},
                                "external_userids": {"type": "array", "items": {"type": "string"}, "maxItems": 100000},
                            },
                        }
                    ),
                },
                "responses": {"202": {"description": "Queued"}, **TAG_ERRORS},
            }
        },
        "/tag-jobs/{job_id}": {
            "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "get": {
                "summary": "A bulk tagging job: status, counts and the failed customers with their reasons",
                "responses": {"200": {"description": "The job"}, **NOT_FOUND},
            },
        },
        "/segments": {
            "get": {
                "summary": "Saved segments (标签分群)",
                "responses": {"200": {"description": "Segments"}, **ERRORS},
            },
            "post": {
                "summary": "Save a segment: a name and a rule",
                "requestBody": {"required": True, **_json("SegmentInput")},
                "responses": {"201": {"description": "Saved, with its count"}, **TAG_ERRORS},
            },
        },
        "/segments/preview": {
            "post": {
                "summary": "An unsaved rule's count, per-condition explanation and first members",
                "requestBody": {
                    "required": True,
                    **_json_schema({"type": "object", "properties": {"rule": {"$ref": "#/components/schemas/Rule"}}}),
                },
                "responses": {"200": {"description": "Count and explanation", **_json("Explain")}, **ERRORS},
            }
        },
        "/segments/{segment_id}": {
            "parameters": [SEGMENT_ID],
            "get": {
                "summary": "A segment and its count",
                "responses": {"200": {"description": "Segment"}, **NOT_FOUND},
            },
            "patch": {
                "summary": "Change a segment's name and rule",
                "requestBody": {"required": True, **_json("SegmentInput")},
                "responses": {"200": {"description": "Saved"}, **TAG_ERRORS, **NOT_FOUND},
            },
            "delete": {"summary": "Delete a segment", "responses": {"200": {"description": "Deleted"}, **TAG_ERRORS}},
        },
        "/segments/{segment_id}/count": {
            "parameters": [SEGMENT_ID],
            "get": {
                "summary": "The count, and per condition how many it keeps alone and combined",
                "responses": {"200": {"description": "Count and explanation", **_json("Explain")}, **NOT_FOUND},
            },
        },
        "/segments/{segment_id}/members": {
            "parameters": [
                SEGMENT_ID,
                {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
            ],
            "get": {
                "summary": "A page of members in id order; next_after gives the next page",
                "responses": {"200": {"description": "Members"}, **NOT_FOUND},
            },
        },
        "/segments/{segment_id}/members.csv": {
            "parameters": [SEGMENT_ID],
            "get": {
                "summary": "Every member as CSV (streamed)",
                "responses": {"200": {"description": "CSV", "content": {"text/csv": {}}}, **NOT_FOUND},
            },
        },
        "/segments/{segment_id}/why/{external_userid}": {
            "parameters": [
                SEGMENT_ID,
                {"name": "external_userid", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "get": {
                "summary": "Whether a customer is in the segment, and which conditions hold for them",
                "responses": {"200": {"description": "Member or not, per condition"}, **NOT_FOUND},
            },
        },
        "/rules": {
            "get": {
                "summary": "Lifecycle rules, each with its results (tasks, reminded, in a send, delivered, converted)",
                "responses": {"200": {"description": "Rules"}, **ERRORS},
            },
            "post": {
                "summary": 'A lifecycle rule; {"template": "birthday"} starts from a built-in template',
                "requestBody": {"required": True, **_json("RuleInput")},
                "responses": {"201": {"description": "The rule"}, **RULE_ERRORS},
            },
        },
        "/rules/templates": {
            "get": {
                "summary": "The built-in templates: 生日关怀, 新客跟进, 沉睡唤醒, 流失挽回",
                "responses": {"200": {"description": "Templates"}, **ERRORS},
            }
        },
        "/rules/dry-run": {
            "post": {
                "summary": "An unsaved rule: who it would touch now, and why (nothing is written)",
                "parameters": [{"name": "sample", "in": "query", "schema": {"type": "integer", "maximum": 500}}],
                "requestBody": {"required": True, **_json("RuleInput")},
                "responses": {"200": {"description": "count, in_window, customers (why)"}, **RULE_ERRORS},
            }
        },
        "/rules/{rule_id}": {
            "parameters": [RULE_ID],
            "get": {"summary": "A rule with its results", "responses": {"200": {"description": "Rule"}, **NOT_FOUND}},
            "patch": {
                "summary": 'Change a rule; {"enabled": true|false} switches it (rules that send: admins only)',
                "requestBody": {"required": True, **_json("RuleInput")},
                "responses": {"200": {"description": "Saved"}, **RULE_ERRORS},
            },
            "delete": {"summary": "Delete a rule", "responses": {"204": {"description": "Deleted"}, **RULE_ERRORS}},
        },
        "/rules/{rule_id}/dry-run": {
            "parameters": [RULE_ID],
            "post": {
                "summary": "Who the rule would touch now, and why (window aside; nothing is written)",
                "responses": {"200": {"description": "count, in_window, customers (why)"}, **NOT_FOUND},
            },
        },
        "/rules/{rule_id}/runs": {
            "parameters": [RULE_ID, {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 500}}],
            "get": {
                "summary": "The rule's runs, newest first: matched, reminded, sent, tagged, notified, errors",
                "responses": {"200": {"description": "Runs"}, **NOT_FOUND},
            },
        },
        "/groups": {
            "get": {
                "summary": "Customer group chats (客户群) in your scope, newest first",
                "parameters": _page_params()
                + [
                    {"name": "owner", "in": "query", "schema": {"type": "string"}},
                    {"name": "store_id", "in": "query", "schema": {"type": "integer"}},
                    {"name": "name", "in": "query", "schema": {"type": "string"}},
                    {"name": "min_size", "in": "query", "schema": {"type": "integer"}},
                    {"name": "max_size", "in": "query", "schema": {"type": "integer"}},
                    {"name": "created_from", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "created_to", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "dismissed", "in": "query", "schema": {"type": "boolean"}},
                ],
                "responses": {"200": {"description": "items, total"}, **ERRORS},
            }
        },
        "/groups/sync": {
            "post": {
                "summary": "Queue the full reconciliation of groups with WeCom",
                "responses": {"202": {"description": "Queued"}, **RULE_ERRORS},
            }
        },
        "/groups/{group_id}": {
            "parameters": [
                GROUP_ID,
                {"name": "days", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 365}},
            ],
            "get": {
                "summary": "A group: its current members (customers with their ids) and joins/departures per day",
                "responses": {"200": {"description": "The group"}, **NOT_FOUND},
            },
        },
        "/join-ways": {
            "get": {"summary": "Group-join codes with their joins", "responses": {"200": {"description": "Codes"}}},
            "post": {
                "summary": "Create a join code in WeCom (add_join_way) for up to 5 groups",
                "requestBody": {"required": True, **_json("JoinWayInput")},
                "responses": {"201": {"description": "The code"}, **WECOM_ERRORS},
            },
        },
        "/join-ways/{way_id}": {
            "parameters": [WAY_ID],
            "get": {
                "summary": "A join code, its groups and its joins per day",
                "responses": {"200": {"description": "The code"}, **NOT_FOUND},
            },
            "patch": {
                "summary": "Change a join code (update_join_way)",
                "requestBody": {"required": True, **_json("JoinWayInput")},
                "responses": {"200": {"description": "Saved"}, **WECOM_ERRORS},
            },
            "delete": {
                "summary": "Delete the code in WeCom (joins keep their attribution)",
                "responses": {"204": {"description": "Deleted"}, **WECOM_ERRORS},
            },
        },
        "/join-ways/{way_id}/qr.png": {
            "parameters": [WAY_ID],
            "get": {
                "summary": "The code's QR image",
                "responses": {"200": {"description": "PNG", "content": {"image/png": {}}}, **WECOM_ERRORS},
            },
        },
        "/group-invites": {
            "get": {"summary": "Invitation campaigns (标签拉群)", "responses": {"200": {"description": "Campaigns"}}},
            "post": {
                "summary": "A campaign: a mass send with the join code's image to customers not in its groups",
                "requestBody": {"required": True, **_json("GroupInviteInput")},
                "responses": {"201": {"description": "The campaign with its funnel"}, **WECOM_ERRORS},
            },
        },
        "/group-invites/{invite_id}": {
            "parameters": [INVITE_ID],
            "get": {
                "summary": "A campaign's funnel: invited → delivered → joined, per member and per store",
                "responses": {"200": {"description": "The campaign"}, **NOT_FOUND},
            },
        },
        "/group-invites/{invite_id}/not-joined": {
            "parameters": [INVITE_ID, {"name": "limit", "in": "query", "schema": {"type": "integer"}}],
            "get": {
                "summary": "The invited who have not joined yet",
                "responses": {"200": {"description": "Customers"}, **NOT_FOUND},
            },
        },
        "/group-invites/{invite_id}/reminder-round": {
            "parameters": [INVITE_ID],
            "post": {
                "summary": "A new round with the same code for exactly those who have not joined",
                "requestBody": {
                    "required": True,
                    **_json_schema({"type": "object", "properties": {"text": {}, "approve": {"type": "boolean"}}}),
                },
                "responses": {"201": {"description": "The new campaign"}, **WECOM_ERRORS},
            },
        },
        "/sends": {
            "get": {
                "summary": "Mass sends (群发), newest first",
                "responses": {"200": {"description": "Sends"}, **ERRORS},
            },
            "post": {
                "summary": 'A draft mass send; an admin may add "approve": true to send it directly',
                "requestBody": {"required": True, **_json("SendInput")},
                "responses": {"201": {"description": "The send, with its preview"}, **SEND_ERRORS},
            },
        },
        "/sends/preview": {
            "post": {
                "summary": "An unsaved send's recipients, members to ask, chunks and over-cap customers",
                "requestBody": {"required": True, **_json("SendInput")},
                "responses": {"200": {"description": "Counts"}, **ERRORS},
            }
        },
        "/sends/{send_id}": {
            "parameters": [SEND_ID],
            "get": {
                "summary": "A send: before dispatch its preview, after it the funnel and the chunks by status",
                "responses": {"200": {"description": "The send"}, **NOT_FOUND},
            },
            "patch": {
                "summary": "Change a draft or a send waiting for approval (it becomes a draft again)",
                "requestBody": {"required": True, **_json("SendInput")},
                "responses": {"200": {"description": "Saved"}, **SEND_ERRORS},
            },
        },
        "/sends/{send_id}/submit": {
            "parameters": [SEND_ID],
            "post": {
                "summary": "Submit a draft for approval",
                "responses": {"200": {"description": "Submitted"}, **SEND_ERRORS},
            },
        },
        "/sends/{send_id}/approve": {
            "parameters": [SEND_ID],
            "post": {
                "summary": "Approve (admins): dispatched now, or at its scheduled time",
                "responses": {"200": {"description": "Approved, with the count approved"}, **SEND_ERRORS},
            },
        },
        "/sends/{send_id}/reject": {
            "parameters": [SEND_ID],
            "post": {
                "summary": "Send back to draft with a reason (admins)",
                "requestBody": {
                    "required": True,
                    **_json_schema({"type": "object", "properties": {"reason": {"type": "string", "maxLength": 300}}}),
                },
                "responses": {"200": {"description": "Back to draft"}, **SEND_ERRORS},
            },
        },
        "/sends/{send_id}/cancel": {
            "parameters": [SEND_ID],
            "post": {
                "summary": "Cancel before or during dispatch; created WeCom tasks are cancelled (cancel_groupmsg_send)",
                "responses": {"200": {"description": "Cancelled"}, **SEND_ERRORS},
            },
        },
        "/sends/{send_id}/members": {
            "parameters": [SEND_ID],
            "get": {
                "summary": "Per member: customers, task status, confirmed, reminders left today",
                "responses": {"200": {"description": "Members"}, **NOT_FOUND},
            },
        },
        "/sends/{send_id}/remind": {
            "parameters": [SEND_ID],
            "post": {
                "summary": "Remind members who have not sent (all, or the userids given); 3 per task per 24 h",
                "requestBody": {
                    "required": False,
                    **_json_schema(
                        {"type": "object", "properties": {"userids": {"type": "array", "items": {"type": "string"}}}}
                    ),
                },
                "responses": {"200": {"description": "reminded, limited, confirmed, failed"}, **SEND_ERRORS},
            },
        },
        "/sends/{send_id}/recipients": {
            "parameters": [
                SEND_ID,
                {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "status", "in": "query", "schema": {"type": "string"}},
            ],
            "get": {
                "summary": "Per-customer results in id order; next_after gives the next page",
                "responses": {"200": {"description": "Recipients"}, **NOT_FOUND},
            },
        },
        "/sends/{send_id}/recipients.csv": {
            "parameters": [SEND_ID],
            "get": {
                "summary": "Every recipient's result as CSV (streamed)",
                "responses": {"200": {"description": "CSV", "content": {"text/csv": {}}}, **NOT_FOUND},
            },
        },
        "/media": {
            "post": {
                "summary": "Keep an attachment file (multipart: kind, file); uploaded to WeCom at dispatch",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {
                                    "kind": {"type": "string", "enum": ["image", "video", "file"]},
                                    "file": {"type": "string", "format": "binary"},
                                },
                            }
                        }
                    },
                },
                "responses": {"201": {"description": "The file's id"}, **ERRORS},
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI"}}}
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    }
                },
            },
            "CustomerSummary": {
                "type": "object",
                "properties": {
                    "external_userid": {"type": "string"},
                    "name": {"type": "string"},
                    "type": {"type": "integer"},
                    "gender": {"type": "integer"},
                    "corp_name": {"type": "string"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "following": {"type": "integer", "description": "members who still follow the customer"},
                },
            },
            "Customer": {
                "allOf": [
                    {"$ref": "#/components/schemas/CustomerSummary"},
                    {
                        "type": "object",
                        "properties": {
                            "avatar": {"type": "string"},
                            "unionid": {"type": ["string", "null"]},
                            "birthday": {"type": ["string", "null"], "format": "date"},
                            "tags": {"type": "array", "items": TAG},
                            "groups": {
                                "type": "array",
                                "description": "the customer groups they are in now",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "id": {"type": "integer"},
                                        "chat_id": {"type": "string"},
                                        "name": {"type": "string"},
                                        "joined_at": {"type": ["string", "null"], "format": "date-time"},
                                    },
                                },
                            },
                            "followers": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "userid": {"type": "string"},
                                        "name": {"type": "string"},
                                        "remark": {"type": "string"},
                                        "description": {"type": "string"},
                                        "state": {"type": "string", "description": "the channel code's state"},
                                        "add_way": {"type": "integer"},
                                        "added_at": {"type": ["string", "null"], "format": "date-time"},
                                        "status": {
                                            "type": "string",
                                            "enum": ["active", "deleted_by_staff", "deleted_by_customer", "pending"],
                                        },
                                        "lost_at": {"type": ["string", "null"], "format": "date-time"},
                                        "lost_reason": {"type": ["string", "null"]},
                                        "tags": {"type": "array", "items": TAG},
                                    },
                                },
                            },
                        },
                    },
                ]
            },
            "Welcome": {
                "type": "object",
                "properties": {
                    "label": {"type": "string"},
                    "text": {
                        "type": "string",
                        "description": "≤ 4000 bytes; {customer_name} {staff_name} {store_name}",
                    },
                    "attachments": {"type": "array", "maxItems": 9, "items": {"type": "object"}},
                    "weight": {"type": "integer", "minimum": 1},
                },
            },
            "ChannelInput": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 64},
                    "group_name": {"type": "string"},
                    "state": {"type": "string", "maxLength": 30, "description": "default: generated"},
                    "staff": {"type": "array", "items": {"type": "string"}, "maxItems": 100},
                    "stores": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "description": "input only: add every active member of these stores to staff",
                    },
                    "skip_verify": {"type": "boolean"},
                    "tag_ids": {"type": "array", "items": {"type": "string"}},
                    "welcome": {"type": "array", "items": {"$ref": "#/components/schemas/Welcome"}},
                    "remark_template": {"type": "string", "maxLength": 64},
                    "daily_cap": {"type": ["integer", "null"], "minimum": 1, "maximum": 10000},
                    "backup_staff": {"type": "array", "items": {"type": "string"}, "maxItems": 100},
                    "expires_at": {"type": ["string", "null"], "format": "date-time"},
                },
            },
            "Channel": {
                "allOf": [
                    {"$ref": "#/components/schemas/ChannelInput"},
                    {
                        "type": "object",
                        "properties": {
                            "id": {"type": "integer"},
                            "config_id": {"type": ["string", "null"]},
                            "qr_code": {"type": "string", "description": "WeCom's image URL"},
                            "qr_png_url": {"type": "string"},
                            "routed_to": {"type": "array", "items": {"type": "string"}},
                            "owner": {"type": ["string", "null"], "description": "a personal code's member"},
                            "active": {"type": "boolean"},
                            "stats": {"$ref": "#/components/schemas/ChannelStats"},
                        },
                    },
                ]
            },
            "TagGroup": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "order": {"type": "integer"},
                    "tags": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "name": {"type": "string"},
                                "order": {"type": "integer"},
                            },
                        },
                    },
                },
            },
            "TagGroupList": {
                "type": "object",
                "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/TagGroup"}}},
            },
            "Rule": {
                "type": "object",
                "description": "conditions: tags (match any/all/none, tag_ids), channel (channel_ids), staff (userids),"
                " store (store_ids), added (after, before), inactive_days (days), birthday_month (month),"
                " birthday_within (days), lost (value), stage (new, active, dormant, lost)",
                "properties": {
                    "op": {"type": "string", "enum": ["and", "or"]},
                    "conditions": {"type": "array", "maxItems": 20, "items": {"type": "object"}},
                },
            },
            "RuleInput": {
                "type": "object",
                "properties": {
                    "template": {"type": "string", "enum": ["birthday", "new_customer", "dormant", "lost"]},
                    "name": {"type": "string", "maxLength": 64},
                    "enabled": {"type": "boolean"},
                    "trigger": {"type": "string", "enum": ["birthday", "added", "dormant", "tag_added", "lost"]},
                    "trigger_args": {
                        "type": "object",
                        "description": "birthday {days_before: 0–30}, added {days: [0–365, …]}, dormant {days},"
                        " tag_added {tag_ids}, lost {}",
                    },
                    "segment_id": {"type": ["integer", "null"], "description": "the audience; null for everyone"},
                    "actions": {
                        "type": "array",
                        "description": "remind {text}, send {text, attachments}, tag {add, remove},"
                        " notify_manager {text}",
                        "items": {"type": "object"},
                    },
                    "window_start": {"type": "string", "description": "HH:MM, corp time (default 10:00)"},
                    "window_end": {"type": "string", "description": "HH:MM, corp time (default 20:00)"},
                    "cooldown_days": {"type": "integer", "minimum": 0},
                },
            },
            "SendInput": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 64},
                    "text": {
                        "type": "string",
                        "description": "≤ 4000 bytes; {staff_name} and {store_name} are filled per member",
                    },
                    "attachments": {"type": "array", "maxItems": 9, "items": {"type": "object"}},
                    "target": {
                        "type": "object",
                        "description": "customers: one of segment_id, rule (e.g. a tag filter), external_userids, "
                        "optionally with not_in_groups (chat ids whose members are left out); or group chats: groups",
                        "properties": {
                            "segment_id": {"type": "integer"},
                            "rule": {"$ref": "#/components/schemas/Rule"},
                            "external_userids": {"type": "array", "items": {"type": "string"}, "maxItems": 100000},
                            "not_in_groups": {"type": "array", "items": {"type": "string"}, "maxItems": 100},
                            "groups": {"$ref": "#/components/schemas/GroupFilter"},
                        },
                    },
                    "sender_rule": {"type": "string", "enum": ["first", "latest", "store"]},
                    "cap_policy": {"type": "string", "enum": ["skip", "report"]},
                    "auto_remind_hours": {"type": "integer", "minimum": 0, "maximum": 72},
                    "scheduled_at": {"type": ["string", "null"], "description": "ISO 8601; corp time without offset"},
                    "approve": {"type": "boolean"},
                },
            },
            "GroupFilter": {
                "type": "object",
                "description": "A send to group chats (chat_type group, ≤ 2000 chats per owner's task): the groups "
                "matching every condition given (none: every group in your scope); each group is sent by its owner",
                "properties": {
                    "owners": {"type": "array", "items": {"type": "string"}},
                    "store_ids": {"type": "array", "items": {"type": "integer"}},
                    "name": {"type": "string", "maxLength": 64},
                    "tag_ids": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "groups with a customer who has any of these tags",
                    },
                    "chat_ids": {"type": "array", "items": {"type": "string"}},
                },
            },
            "JoinWayInput": {
                "type": "object",
                "required": ["name", "chat_ids"],
                "properties": {
                    "name": {"type": "string", "maxLength": 30},
                    "chat_ids": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 5},
                    "auto_create_room": {"type": "boolean", "default": True},
                    "room_base_name": {"type": "string", "maxLength": 40},
                    "room_base_id": {"type": ["integer", "null"], "minimum": 1},
                    "state": {"type": "string", "maxLength": 30, "description": "generated when left out"},
                },
            },
            "GroupInviteInput": {
                "type": "object",
                "required": ["name", "target"],
                "properties": {
                    "name": {"type": "string", "maxLength": 64},
                    "text": {"type": "string"},
                    "target": {"type": "object", "description": "customers, as in SendInput"},
                    "chat_ids": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
                    "join_way_id": {"type": "integer", "description": "instead of chat_ids: an existing code"},
                    "sender_rule": {"type": "string", "enum": ["first", "latest", "store"]},
                    "cap_policy": {"type": "string", "enum": ["skip", "report"]},
                    "auto_remind_hours": {"type": "integer", "minimum": 0, "maximum": 72},
                    "scheduled_at": {"type": ["string", "null"]},
                    "approve": {"type": "boolean"},
                },
            },
            "SegmentInput": {
                "type": "object",
                "required": ["name", "rule"],
                "properties": {
                    "name": {"type": "string", "maxLength": 64},
                    "rule": {"$ref": "#/components/schemas/Rule"},
                },
            },
            "Explain": {
                "type": "object",
                "properties": {
                    "count": {"type": "integer"},
                    "in_scope": {"type": "integer"},
                    "steps": {"type": "array", "items": {"type": "object"}},
                },
            },
            "TagEdit": {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": 30}, "order": {"type": "integer", "minimum": 0}},
            },
            "ChannelStats": {
                "type": "object",
                "properties": {
                    "added": {"type": "integer"},
                    "lost": {"type": "integer"},
                    "net": {"type": "integer"},
                    "eligible_7d": {"type": "integer", "description": "adds in the window at least 7 days old"},
                    "retained_7d": {"type": "integer"},
                    "retention_7d": {"type": ["number", "null"]},
                    "variants": {"type": "array", "items": {"type": "object"}, "description": "one channel only"},
                },
            },
            "ChannelList": {
                "type": "object",
                "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Channel"}}},
            },
            "CustomerPage": {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/CustomerSummary"}},
                    "page": {"type": "integer"},
                    "per_page": {"type": "integer"},
                    "total": {"type": "integer"},
                },
            },
            "EventPage": {
                "type": "object",
                "properties": {
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "integer"},
                                "kind": {"type": "string"},
                                "status": {"type": "string"},
                                "attempts": {"type": "integer"},
                                "last_error": {"type": ["string", "null"]},
                                "received_at": {"type": "string", "format": "date-time"},
                                "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                            },
                        },
                    },
                    "page": {"type": "integer"},
                    "per_page": {"type": "integer"},
                    "total": {"type": "integer"},
                },
            },
        },
    },
}


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    return jsonify(SPEC)
