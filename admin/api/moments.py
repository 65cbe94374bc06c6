"""Customer moments (客户朋友圈): /api/v1/moments — draft, preview, submit, approve, cancel, remind, and read a
moment with its funnel, its members (posted or not, reach, likes, comments), the likes and comments, and the
members' own moments. Operators and store managers draft; admins approve. Store managers see only the
moments they made, and only the members of their stores."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from flask import Response, g, jsonify
from flask.typing import ResponseReturnValue
from pydantic import Field
from sqlalchemy import select

from admin.api import iso, not_found
from admin.api.operations import Body, Id, Key64, Query, Text, operation
from admin.spreadsheet import stream_csv
from bot.extensions import db
from bot.models import Moment
from bot.models._time import utcnow
from bot.services.moments import compose, tracking
from bot.services.moments.jobs import start_moment
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action

Text2000 = Annotated[str, Field(pattern=r"^[^\x00]*$", max_length=2000)]


class Senders(Body):
    """Who posts: exactly one of everyone (true), userids, store_ids — within your stores."""

    everyone: Literal[True] | None = None
    userids: list[Key64] | None = Field(None, max_length=100_000)
    store_ids: list[Id] | None = Field(None, max_length=1000)

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class MomentAudience(Body):
    senders: Senders
    tag_ids: list[Key64] | None = Field(None, max_length=100, description="customers with any of these corp tags")


class MomentInput(MomentAudience):
    text: Text2000 = Field("", description="≤ 2000 characters; text or attachments (or both)")
    attachments: list[Id] | None = Field(
        None, max_length=9, description="library item ids: ≤ 9 images, or 1 video, or 1 link with a cover"
    )
    scheduled_at: Text | None = Field(None, description="ISO 8601; corp time without offset; ≤ 90 days ahead")
    remind_after_hours: Annotated[int, Field(ge=0, le=72)] | None = Field(
        24, description="one app reminder to members who have not posted after this many hours; 0: none"
    )
    approve: bool = Field(False, description="an admin posts it directly (approved at once)")

    def fields(self) -> dict[str, Any]:
        data = self.model_dump(exclude_unset=True, exclude={"approve", "senders"})
        return {**data, "senders": self.senders.given()}


class Reminder(Body):
    userids: list[Text] | None = Field(None, description="default: every member who has not posted")


class Activity(Query):
    days: Annotated[int, Field(ge=1, le=90)] = 30


ANSWERS: dict[int, Any] = {
    403: "Not allowed for your role",
    404: "No such moment",
    409: "Not possible in the moment's current state",
}
NO_MOMENT = {404: "No such moment"}


def get_moment(moment_id: int, user: Any) -> Moment:
    moment = db.session.scalar(select(Moment).where(Moment.id == moment_id, compose.visible(user)))
    if moment is None:
        raise not_found("moment", moment_id)
    return moment


def moment_json(moment: Moment, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": moment.id,
        **compose.describe(moment),
        "created_at": iso(moment.created_at),
        "approved_at": iso(moment.approved_at),
        "moment_id": moment.moment_id,
        "posted_at": iso(moment.posted_at),
        "cancelled_at": iso(moment.cancelled_at),
        "invalid_senders": moment.invalid_senders,
        "invalid_tags": moment.invalid_tags,
        "error": moment.error,
    }
    if full:
        data["funnel"] = tracking.funnel(moment)
        data["tracked_at"] = iso(moment.tracked_at)
    return data


def member_json(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "published_at": iso(row["published_at"]), "reminded_at": iso(row["reminded_at"])}


@operation("GET", "/moments", "Customer moments (客户朋友圈), newest first", responses={200: "Moments"})
def list_moments() -> ResponseReturnValue:
    rows = db.session.scalars(select(Moment).where(compose.visible(g.api_user)).order_by(Moment.id.desc()).limit(200))
    return jsonify(items=[moment_json(m) for m in rows])


@operation(
    "POST",
    "/moments",
    'A draft moment; an admin may add "approve": true to post it directly (or at its scheduled time)',
    body=MomentInput,
    responses={201: "The moment", **ANSWERS},
)
def create_moment(body: MomentInput) -> ResponseReturnValue:
    moment = compose.save_draft(body.fields(), g.api_user)
    if body.approve:
        compose.approve(moment, g.api_user)
    db.session.commit()
    start_moment(moment)
    return jsonify(moment_json(moment, full=True)), 201


@operation(
    "POST",
    "/moments/preview",
    "Members who would be asked, and roughly how many customers could see it",
    body=MomentAudience,
    action=Action.draft_sends,
    responses={200: "members, customers"},
)
def preview_moment(body: MomentAudience) -> ResponseReturnValue:
    return jsonify(compose.preview({"senders": body.senders.given(), "tag_ids": body.tag_ids}, g.api_user))


@operation(
    "GET",
    "/moments/<int:moment_id>",
    "A moment with its funnel: asked → posted → customers who can see it → likes and comments",
    responses={200: "The moment", **NO_MOMENT},
)
def read_moment(moment_id: int) -> ResponseReturnValue:
    return jsonify(moment_json(get_moment(moment_id, g.api_user), full=True))


@operation(
    "PATCH",
    "/moments/<int:moment_id>",
    "Change a draft or a moment waiting for approval (it becomes a draft again)",
    body=MomentInput,
    responses={200: "Saved", **ANSWERS},
)
def update_moment(moment_id: int, body: MomentInput) -> ResponseReturnValue:
    moment = get_moment(moment_id, g.api_user)
    kept = {**compose.describe(moment), "attachments": [a["item_id"] for a in moment.attachments]}
    if kept["scheduled_at"]:
        kept["scheduled_at"] = kept["scheduled_at"].removesuffix("Z") + "+00:00"
    compose.save_draft({**kept, **body.fields()}, g.api_user, moment)
    db.session.commit()
    return jsonify(moment_json(moment, full=True))


@operation(
    "POST", "/moments/<int:moment_id>/submit", "Submit a draft for approval", responses={200: "Submitted", **ANSWERS}
)
def submit_moment(moment_id: int) -> ResponseReturnValue:
    moment = get_moment(moment_id, g.api_user)
    compose.submit(moment, g.api_user)
    db.session.commit()
    return jsonify(moment_json(moment))


@operation(
    "POST",
    "/moments/<int:moment_id>/approve",
    "Approve (admins): posted now, or at its scheduled time",
    responses={200: "Approved", **ANSWERS},
)
def approve_moment(moment_id: int) -> ResponseReturnValue:
    moment = get_moment(moment_id, g.api_user)
    compose.approve(moment, g.api_user)
    db.session.commit()
    start_moment(moment)
    return jsonify(moment_json(moment))


@operation(
    "POST",
    "/moments/<int:moment_id>/cancel",
    "Cancel: before dispatch nothing reaches WeCom; after it, members who have not posted no longer can "
    "(cancel_moment_task); what was posted stays",
    responses={200: "Cancelled", 502: "WeCom refused", **ANSWERS},
)
def cancel_moment(moment_id: int) -> ResponseReturnValue:
    moment = get_moment(moment_id, g.api_user)
    tracking.cancel(moment, g.api_user)
    db.session.commit()
    return jsonify(moment_json(moment))


@operation(
    "GET",
    "/moments/<int:moment_id>/members",
    "Per member asked (in your scope): stores, posted, customers meant for and reached, likes, comments",
    responses={200: "Members", **NO_MOMENT},
)
def moment_members(moment_id: int) -> ResponseReturnValue:
    moment = get_moment(moment_id, g.api_user)
    return jsonify(items=[member_json(r) for r in tracking.members(moment, g.api_user)])


@operation(
    "GET",
    "/moments/<int:moment_id>/reactions",
    "The latest likes and comments (a customer's with their customer id, a colleague's by userid)",
    responses={200: "Likes and comments", **NO_MOMENT},
)
def moment_reactions(moment_id: int) -> ResponseReturnValue:
    rows = tracking.reactions(get_moment(moment_id, g.api_user))
    return jsonify(items=[{**r, "at": iso(r["at"])} for r in rows])


@operation(
    "POST",
    "/moments/<int:moment_id>/remind",
    "An app message to members who have not posted (all, or the userids given); none twice within an hour",
    body=Reminder,
    body_required=False,
    responses={200: "reminded, limited, posted, failed", **ANSWERS},
)
def remind_moment(moment_id: int, body: Reminder) -> ResponseReturnValue:
    moment = get_moment(moment_id, g.api_user)
    counts = tracking.remind_as(g.api_user, moment, body.userids)
    db.session.commit()
    return jsonify(counts)


MEMBER_CSV = list(tracking.MEMBER_COLUMNS)


def members_csv(moment: Moment, user: Any, ip: str = "") -> Response:
    """Per-member results as CSV; the export is audited first."""
    rows = tracking.members(moment, user)
    audit(user, "export_moment", f"moment:{moment.id}", ip=ip)
    db.session.commit()
    values = (
        [
            r["userid"],
            r["name"],
            "、".join(r["stores"]),
            int(r["published"]),
            iso(r["published_at"]) or "",
            r["visible"] if r["visible"] is not None else "",
            r["reached"],
            r["likes"],
            r["comments"],
            r["reminders"],
        ]
        for r in rows
    )
    return Response(
        stream_csv(MEMBER_CSV, values),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="moment-{moment.id}-members.csv"'},
    )


@operation(
    "GET",
    "/moments/<int:moment_id>/members.csv",
    "Per-member results as CSV",
    responses={200: ("CSV", "text/csv"), **NO_MOMENT},
)
def export_moment_members(moment_id: int) -> ResponseReturnValue:
    return members_csv(get_moment(moment_id, g.api_user), g.api_user)


@operation(
    "GET",
    "/moments/members-own",
    "Moments members posted themselves, per member in your scope, over the last `days`",
    query=Activity,
    responses={200: "Per member: count and latest"},
)
def member_moments(query: Activity) -> ResponseReturnValue:
    rows = tracking.member_activity(g.api_user, utcnow() - timedelta(days=query.days))
    return jsonify(items=[{**r, "latest": iso(r["latest"])} for r in rows])
