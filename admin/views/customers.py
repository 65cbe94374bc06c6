"""客户: search and filters, keyset pages, CSV export and the 360° profile, all within the user's scope."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, stream_with_context, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import Select, select, union
from sqlalchemy.orm import aliased, selectinload

from admin import pickers
from admin.api.customers import MAX_BIRTHDAY_CSV
from admin.forms import CustomerNotesForm, EmptyForm
from admin.params import submitted_fields, whole
from admin.spreadsheet import BOM, UploadTooLarge, cell, read_pairs
from admin.views import bp, client_ip, permission_required, refusal_message
from bot.extensions import db
from bot.models import (
    Customer,
    FollowRelation,
    FollowStatus,
    FollowTag,
    Segment,
    Staff,
    Store,
)
from bot.services import corp_time
from bot.services.commerce import values as purchase_values
from bot.services.customers import fields as custom_fields
from bot.services.customers.relations import added_within, update_profile
from bot.services.customers.relations import import_birthdays as import_birthday_rows
from bot.services.customers.timeline import received_messages
from bot.services.errors import ServiceError
from bot.services.groups import mirror as groups
from bot.services.radar import reports as radar_reports
from bot.services.segments import rules as segments
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action, allows
from bot.services.users.scope import (
    can_see_customer,
    customer_condition,
    sees_staff,
    staff_condition,
    store_ids,
)

PAGE_SIZE = 50
STATUS_LABELS = {
    FollowStatus.active: _l("正常"),
    FollowStatus.pending: _l("待通过"),
    FollowStatus.deleted_by_customer: _l("已流失（客户删除）"),
    FollowStatus.deleted_by_staff: _l("员工已删除"),
    FollowStatus.transferred: _l("已转交其他员工"),
}


def _date_arg(name: str, ignored: dict[str, str]) -> date | None:
    """A date filter; one that is no date, or outside 1900–2100, is ignored, and why is noted in ``ignored``
    (shown beside the filter: the list still answers with the other filters)."""
    raw = request.args.get(name, "")
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        ignored[name] = _("日期格式应为 YYYY-MM-DD")
        return None
    if not corp_time.in_range(day):
        ignored[name] = _("日期应在 1900-01-01 与 2100-12-31 之间")
        return None
    return day


def filtered_customers() -> tuple[Select[Any], dict[str, Any]]:
    """The customers the current filters select, inside the user's scope; and the filters as read."""
    ignored: dict[str, str] = {}
    f: dict[str, Any] = {
        "q": request.args.get("q", "").strip()[:64],
        "tag": request.args.get("tag", ""),
        "channel": request.args.get("channel", "").strip()[:30],
        "staff": request.args.get("staff", ""),
        "store": request.args.get("store", type=whole),
        "ignored": ignored,
        "added_from": _date_arg("added_from", ignored),
        "added_to": _date_arg("added_to", ignored),
    }
    query = select(Customer).where(customer_condition(current_user))
    if f["q"]:
        # One IN over a UNION of id sets, not OR-ed predicates: PostgreSQL turns it into a semi-join driven
        # by the trigram indexes (8 ms at a million customers, against 260 ms for the OR form, which walks
        # the whole primary key). autoescape: a typed % or _ is a character, not a wildcard.
        term = f["q"]
        inner = aliased(Customer)
        matches = union(
            select(inner.id).where(inner.name.contains(term, autoescape=True)),
            select(FollowRelation.customer_id).where(FollowRelation.remark.contains(term, autoescape=True)),
            select(inner.id).where(inner.external_userid == term),
        )
        query = query.where(Customer.id.in_(matches))
    follow_filters = []
    if f["tag"]:
        follow_filters.append(FollowRelation.tags.any(FollowTag.tag_id == f["tag"]))
    if f["channel"]:
        follow_filters.append(FollowRelation.state == f["channel"])
    if f["staff"]:
        follow_filters.append(FollowRelation.staff.has(Staff.userid == f["staff"]))
    if f["store"]:
        follow_filters.append(FollowRelation.staff.has(Staff.stores.any(Store.id == f["store"])))
    follow_filters.extend(added_within(f["added_from"], f["added_to"]))
    if follow_filters:
        query = query.where(Customer.follows.any(db.and_(*follow_filters)))
    return query, f


@bp.get("/customers")
def customers() -> ResponseReturnValue:
    query, filters = filtered_customers()
    after = request.args.get("after", type=whole)
    if after:
        query = query.where(Customer.id < after)  # keyset: fast on any page, at any size
    rows = db.session.scalars(
        query.options(selectinload(Customer.follows).selectinload(FollowRelation.staff))
        .order_by(Customer.id.desc())
        .limit(PAGE_SIZE + 1)
    ).all()
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    args: dict[str, Any] = {k: v for k, v in request.args.items() if k != "after"}
    return render_template(
        "admin/customers/list.html",
        customers=rows,
        filters=filters,
        next_url=url_for("admin.customers", **args, after=rows[-1].id) if more else None,
        first_url=url_for("admin.customers", **args) if after else None,
        export_url=url_for("admin.export_customers", **args),
        # The filters' pickers list the one chosen and the first suggestions; the rest are searched.
        tags=pickers.options("tags", current_user, [filters["tag"]] if filters["tag"] else []),
        staff=pickers.options("members", current_user, [filters["staff"]] if filters["staff"] else []),
        stores=pickers.options("stores", current_user, [str(filters["store"])] if filters["store"] else []),
        status_labels=STATUS_LABELS,
        can_import=allows(current_user, Action.edit_customers),
        can_bulk=allows(current_user, Action.bulk_tag_customers),
        can_send=allows(current_user, Action.draft_sends),
        can_hand_over=allows(current_user, Action.hand_over),
        bulk_tags=pickers.options("tags", current_user, []),
        form=EmptyForm(),
    )


@bp.post("/customers/birthdays")
@permission_required(Action.edit_customers)
def import_birthdays() -> ResponseReturnValue:
    """A CSV of (external_userid, birthday); customers outside the user's stores are reported, not changed."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash(_("请选择一个 CSV 文件"), "error")
        return redirect(url_for("admin.customers"))
    try:
        rows = read_pairs(upload, MAX_BIRTHDAY_CSV, "external_userid")
        result = import_birthday_rows(rows, customer_condition(current_user))
    except UploadTooLarge as exc:
        flash(_("CSV 文件最大 %(mb)s MB", mb=exc.max_mb), "error")
        return redirect(url_for("admin.customers"))
    except ValueError:
        flash(_("一次最多导入 100000 行"), "error")
        return redirect(url_for("admin.customers"))
    audit(current_user, "import_birthdays", "customers", after={"updated": result["updated"]}, ip=client_ip())
    db.session.commit()
    flash(
        _(
            "已导入生日：更新 %(updated)s 位，未变 %(unchanged)s 位，有问题 %(problems)s 行",
            updated=result["updated"],
            unchanged=result["unchanged"],
            problems=result["problems"],
        )
    )
    return redirect(url_for("admin.customers"))


@bp.get("/customers/export.csv")
def export_customers() -> ResponseReturnValue:
    query, _filters = filtered_customers()
    audit(current_user, "export_customers", request.query_string.decode()[:128], ip=client_ip())
    db.session.commit()
    return csv_response(query, "customers.csv")


def csv_response(query: Select[Any], filename: str) -> Response:
    """The customers ``query`` selects as a CSV streamed a thousand at a time (newest first), one row per
    follow relation."""
    batches = query.options(selectinload(Customer.follows).selectinload(FollowRelation.staff)).order_by(
        Customer.id.desc()
    )

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write(BOM)
        writer.writerow(
            ["external_userid", _("客户"), _("跟进员工"), _("渠道 state"), _("添加时间"), _("状态"), _("生日")]
        )
        last_id = None
        while True:
            page = batches.where(Customer.id < last_id) if last_id else batches
            chunk = db.session.scalars(page.limit(1000)).all()
            for c in chunk:
                for f in c.follows or [None]:
                    # Every text cell through ``cell``: a state or a name is whatever a person typed.
                    writer.writerow(
                        [
                            cell(c.external_userid),
                            cell(c.name),
                            cell(f.staff.userid) if f else "",
                            cell(f.state) if f else "",
                            f.added_at.isoformat(sep=" ", timespec="seconds") if f and f.added_at else "",
                            str(STATUS_LABELS[f.status]) if f else "",
                            c.birthday.isoformat() if c.birthday else "",
                        ]
                    )
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(chunk) < 1000:
                return
            last_id = chunk[-1].id
            db.session.expunge_all()

    return Response(
        stream_with_context(rows()),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename={filename}"},
    )


def _customer_or_403(external_userid: str) -> Customer:
    customer = db.session.scalar(
        select(Customer)
        .where(Customer.external_userid == external_userid)
        .options(
            selectinload(Customer.follows).selectinload(FollowRelation.staff).selectinload(Staff.stores),
            selectinload(Customer.follows).selectinload(FollowRelation.tags),
        )
    )
    if customer is None:
        abort(404)
    if not can_see_customer(current_user, customer):
        abort(403)
    return customer


@bp.get("/customers/<external_userid>")
def customer(external_userid: str) -> ResponseReturnValue:
    c = _customer_or_403(external_userid)
    form = CustomerNotesForm(data={"birthday": c.birthday, "notes": c.notes})
    return _profile(c, form)


def field_editor() -> custom_fields.Editor:
    """How the signed-in user edits custom fields: admins every field, other customer editors theirs."""
    return custom_fields.Editor.admin if current_user.role.value == "admin" else custom_fields.Editor.user


def _profile(c: Customer, form: CustomerNotesForm, field_errors: dict[str, str] | None = None) -> str:
    # "Why is this customer in (or out of) that segment?": each condition of the chosen segment, held or not.
    all_segments = db.session.scalars(select(Segment).order_by(Segment.name)).all()
    chosen = db.session.get(Segment, request.args.get("segment", type=whole) or 0)
    why = segments.why(segments.parse_rule(chosen.rule), c) if chosen else None
    # A customer shared by several stores: a store manager sees their own stores' followers (remarks, tags),
    # their events, groups and messages, never another store's.
    follows = [f for f in c.follows if sees_staff(current_user, f.staff)]
    visible_userids = {f.staff.userid for f in follows}
    every_store = store_ids(current_user) is None
    events = [e for e in c.events if every_store or e.staff_userid is None or e.staff_userid in visible_userids]
    page = request.args.get("messages", type=whole) or 1
    senders = staff_condition(current_user) if store_ids(current_user) is not None else None
    messages, more = received_messages(c, senders, max(page, 1))
    return render_template(
        "admin/customers/profile.html",
        c=c,
        follows=follows,
        events=events,
        form=form,
        status_labels=STATUS_LABELS,
        can_edit=allows(current_user, Action.edit_customers),
        segments=all_segments,
        chosen=chosen,
        why=why,
        customer_groups=groups.groups_of(c, current_user),
        opened=radar_reports.customer_opens(c, user=current_user),
        messages=messages,
        messages_page=max(page, 1),
        more_messages=more,
        purchases=purchase_values.summary(c),
        custom_fields=[
            (f, v, custom_fields.display(f, v), custom_fields.may_edit(f, field_editor()))
            for f, v in custom_fields.profile(c)
        ],
        field_errors=field_errors or {},
    )


@bp.post("/customers/<external_userid>")
@permission_required(Action.edit_customers)
def edit_customer(external_userid: str) -> ResponseReturnValue:
    c = _customer_or_403(external_userid)
    form = CustomerNotesForm()
    if not form.validate_on_submit():
        return _profile(c, form), 400
    before = {"birthday": c.birthday, "notes": c.notes}
    update_profile(c, birthday=form.birthday.data, notes=form.notes.data or "")
    audit(
        current_user,
        "edit_customer",
        f"customer:{external_userid}",
        before=before,
        after={"birthday": c.birthday, "notes": c.notes},
        ip=client_ip(),
    )
    db.session.commit()
    flash(_("已保存"))
    return redirect(url_for("admin.customer", external_userid=external_userid))


@bp.post("/customers/<external_userid>/fields")
@permission_required(Action.edit_customers)
def edit_customer_fields(external_userid: str) -> ResponseReturnValue:
    """The custom fields the user may edit, all or nothing: a wrong value is shown at its field."""
    c = _customer_or_403(external_userid)
    if not EmptyForm().validate_on_submit():
        abort(400)
    editable = [f for f in custom_fields.active_fields() if custom_fields.may_edit(f, field_editor())]
    try:
        wanted = custom_fields.read_values(submitted_fields(request.form, editable), field_editor(), c)
        changed = custom_fields.set_values(c, wanted, by=f"user:{current_user.id}")
    except ServiceError as exc:
        db.session.rollback()
        notes = CustomerNotesForm(data={"birthday": c.birthday, "notes": c.notes})
        return _profile(c, notes, {exc.field or "fields": refusal_message(exc)}), 400
    if changed:
        before, after = custom_fields.before_after(changed)
        audit(
            current_user,
            "edit_customer_fields",
            f"customer:{external_userid}",
            before=before,
            after=after,
            ip=client_ip(),
        )
    db.session.commit()
    flash(_("已保存"))
    return redirect(url_for("admin.customer", external_userid=external_userid) + "#custom-fields")
