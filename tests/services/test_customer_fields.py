"""Custom customer fields: definitions (kinds, options kept by label, order, archive), values read alike from
every front door (wrong types refused, nothing half-written), who may edit, the timeline, and segment
conditions on them (counts on the facets and member lists agree)."""

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import Customer, CustomerEvent, CustomerFieldValue
from bot.services.customers import fields
from bot.services.customers.fields import Editor
from bot.services.errors import Conflict, Forbidden, Invalid
from bot.services.segments import rules
from tests.conftest import customers_of
from tests.services.lifecycle_helpers import MEMBERS


@pytest.fixture
def people(app, sim, corp, run_worker):
    """Eight customers (two per member of stores 2 and 3), by external_userid."""
    return [c.external_userid for c in customers_of(app, sim, run_worker, MEMBERS)]


def customer(external_userid):
    return db.session.scalar(select(Customer).where(Customer.external_userid == external_userid))


def define_all():
    """One field of every kind."""
    return {
        "job": fields.define_field("职业", "text", "members"),
        "height": fields.define_field("身高", "number", "users"),
        "wedding": fields.define_field("结婚纪念日", "date", "members"),
        "skin": fields.define_field("肤质", "choice", "members", ["干性", "油性", "混合"]),
        "likes": fields.define_field("喜好", "choices", "members", ["口红", "香水", "面霜"]),
        "phone2": fields.define_field("备用手机", "phone", "admins"),
    }


@pytest.mark.parametrize(
    ("name", "kind", "editors", "options", "error"),
    [
        ("", "text", "members", [], Invalid),
        ("x" * 33, "text", "members", [], Invalid),
        ("ok", "colour", "members", [], Invalid),
        ("ok", "text", "everyone", [], Invalid),
        ("ok", "text", "members", ["a"], Invalid),  # options only for choice kinds
        ("ok", "choice", "members", [], Invalid),
        ("ok", "choice", "members", ["a", "a"], Invalid),
        ("ok", "choices", "members", ["x" * 33], Invalid),
    ],
)
def test_a_field_definition_is_checked(app, name, kind, editors, options, error):
    with app.app_context(), pytest.raises(error):
        fields.define_field(name, kind, editors, options)


def test_options_keep_their_customers_by_label_and_the_kind_stays(app, people):
    with app.app_context():
        likes = fields.define_field("喜好", "choices", "members", ["口红", "香水", "面霜"])
        c = customer(people[0])
        fields.set_values(c, fields.read_values({"喜好": ["口红", "面霜"]}, Editor.member), by="test")
        with pytest.raises(Conflict):
            fields.define_field("喜好", "choices", "members", ["口红"])  # same name, another field
        with pytest.raises(Conflict):
            fields.define_field("喜好", "text", "members", field=likes)
        # 香水 goes, 面霜 stays (its id too), 眼影 is new
        fields.define_field("喜好", "choices", "members", ["面霜", "眼影", "口红"], field=likes)
        db.session.commit()
        assert [o["label"] for o in likes.live_options] == ["面霜", "眼影", "口红"]
        assert fields.display(likes, fields.values_of(c)[likes.id]) == "口红、面霜"
        lipstick = next(o["id"] for o in likes.options if o["label"] == "口红")
        saved = rules.parse_rule(
            {"op": "and", "conditions": [{"type": "field", "field_id": likes.id, "op": "eq", "value": lipstick}]}
        ).dump()
        # 口红 removed: customers who chose it no longer have it, their timeline says so, and a segment that
        # named it still reads (and keeps nobody)
        fields.define_field("喜好", "choices", "members", ["面霜", "眼影"], field=likes)
        db.session.commit()
        assert fields.display(likes, fields.values_of(c)[likes.id]) == "面霜"
        details = db.session.scalars(
            select(CustomerEvent.detail).where(CustomerEvent.customer_id == c.id, CustomerEvent.kind == "field_changed")
        ).all()
        assert "喜好：删除了选项 口红" in details
        assert rules.count(rules.parse_rule(saved), None) == 0
        with pytest.raises(Invalid):
            fields.read_values({"喜好": ["口红"]}, Editor.member)  # no longer an option to choose
        # the label comes back with its id: the saved segment means it again
        fields.define_field("喜好", "choices", "members", ["面霜", "眼影", "口红"], field=likes)
        assert next(o["id"] for o in likes.live_options if o["label"] == "口红") == lipstick


def test_fields_are_ordered_and_archived_not_deleted(app, people):
    with app.app_context():
        made = define_all()
        fields.set_values(customer(people[0]), fields.read_values({"职业": "教师"}, Editor.member), by="test")
        fields.move_field(made["phone2"], -1)
        assert [f.name for f in fields.active_fields()][-2:] == ["备用手机", "喜好"]
        fields.archive_field(made["job"], True)
        assert "职业" not in [f.name for f in fields.active_fields()]
        with pytest.raises(Invalid):
            fields.read_values({"职业": "医生"}, Editor.admin)
        fields.archive_field(made["job"], False)
        db.session.commit()
        assert fields.values_of(customer(people[0]))[made["job"].id] == "教师"  # kept while archived


def test_values_of_every_kind_go_on_the_timeline_and_read_back(app, people):
    with app.app_context():
        made = define_all()
        c = customer(people[0])
        wanted = fields.read_values(
            {
                str(made["job"].id): " 教师 ",
                "身高": "172.50",
                "结婚纪念日": "2020-05-20",
                "肤质": "油性",
                "喜好": "香水、口红",
                "备用手机": "+86 138-0013-8000",
            },
            Editor.admin,
        )
        changed = fields.set_values(c, wanted, by="user:1", staff_userid="")
        db.session.commit()
        assert changed["身高"] == ("", "172.5") and changed["喜好"] == ("", "口红、香水")
        values = fields.values_of(c)
        assert values[made["height"].id] == Decimal("172.5")
        assert values[made["wedding"].id] == date(2020, 5, 20)
        assert values[made["phone2"].id] == "+8613800138000"
        assert fields.as_json(made["likes"], values[made["likes"].id]) == ["口红", "香水"]
        events = db.session.scalars(
            select(CustomerEvent.detail).where(CustomerEvent.customer_id == c.id, CustomerEvent.kind == "field_changed")
        ).all()
        assert "职业：— → 教师" in events and len(events) == 6
        # the same values again change nothing; clearing one is one more event
        assert fields.set_values(c, wanted, by="user:1") == {}
        assert fields.set_values(c, fields.read_values({"职业": ""}, Editor.user), by="user:1") == {
            "职业": ("教师", "")
        }
        db.session.commit()
        assert made["job"].id not in fields.values_of(c)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("身高", "tall"),
        ("身高", True),
        ("身高", "1e400"),
        ("身高", "0.00001"),
        ("结婚纪念日", "2020-13-01"),
        ("结婚纪念日", "1899-12-31"),
        ("肤质", "中性"),
        ("喜好", {"a": 1}),
        ("备用手机", "call me"),
        ("职业", "x" * 501),
        ("职业", ["a"]),
        ("职业", "a\x00b"),
        ("身高", "1,2"),
        ("身高", "1_000"),
        ("结婚纪念日", "20200101"),
        ("结婚纪念日", "2020-W01-1"),
        ("喜好", ["口红"] * 4),  # more than there are options
        ("没有的字段", "x"),
        ("²", "x"),  # a digit to isdigit(), not a field id
    ],
)
def test_a_wrong_value_is_refused_and_nothing_is_written(app, people, key, value):
    with app.app_context():
        define_all()
        c = customer(people[0])
        with pytest.raises(Invalid) as refused:
            fields.set_values(c, fields.read_values({"职业": "教师", key: value}, Editor.admin), by="test")
        assert refused.value.field == f"fields.{key}"
        assert db.session.scalar(select(CustomerFieldValue.id)) is None


def test_labels_are_read_as_labels_and_ids_only_as_numbers(app, people):
    with app.app_context():
        score = fields.define_field("满意度", "choice", "members", ["5", "4", "3", "2", "1"])
        c = customer(people[0])
        fields.set_values(c, fields.read_values({"满意度": "1"}, Editor.member), by="test")
        assert fields.display(score, fields.values_of(c)[score.id]) == "1"  # the label "1", not option 1 ("5")
        fields.set_values(c, fields.read_values({"满意度": 1}, Editor.member), by="test")
        assert fields.display(score, fields.values_of(c)[score.id]) == "5"  # a JSON number is an id
        phone = fields.define_field("备用手机", "phone", "members")
        fields.set_values(c, fields.read_values({"备用手机": "１３８ ００１３ ８０００"}, Editor.member), by="test")
        assert fields.values_of(c)[phone.id] == "13800138000"  # full-width digits read as ASCII


def test_a_field_not_theirs_passes_when_sent_back_unchanged(app, people):
    with app.app_context():
        define_all()
        c = customer(people[0])
        fields.set_values(c, fields.read_values({"备用手机": "13800138000"}, Editor.admin), by="test")
        back = fields.read_values({"备用手机": "13800138000", "职业": "教师"}, Editor.user, c)
        assert [f.name for f in back] == ["职业"]
        with pytest.raises(Forbidden):
            fields.read_values({"备用手机": "13900139000"}, Editor.user, c)


def test_who_may_edit_a_field(app, people):
    with app.app_context():
        define_all()
        with pytest.raises(Forbidden):
            fields.read_values({"身高": 170}, Editor.member)  # users only
        with pytest.raises(Forbidden):
            fields.read_values({"备用手机": "13800138000"}, Editor.user)  # admins only
        assert len(fields.read_values({"身高": 170, "职业": "x"}, Editor.user)) == 2


def segment_of(*conditions, op="and"):
    return rules.parse_rule({"op": op, "conditions": list(conditions)})


def test_segment_conditions_on_fields_count_as_members_list(app, people):
    with app.app_context():
        made = define_all()
        plan = {
            0: {"职业": "教师", "身高": 160, "结婚纪念日": "2020-05-20", "肤质": "干性", "喜好": ["口红"]},
            1: {"职业": "医生", "身高": 175.5, "肤质": "油性", "喜好": ["口红", "香水"]},
            2: {"职业": "教师", "身高": 181, "结婚纪念日": "2023-01-01", "喜好": ["面霜"]},
            3: {"身高": 150},
        }
        for i, raw in plan.items():
            fields.set_values(customer(people[i]), fields.read_values(raw, Editor.admin), by="test")
        db.session.commit()
        fid = {k: f.id for k, f in made.items()}
        cases = [
            ({"field_id": fid["job"], "op": "eq", "value": "教师"}, {0, 2}),
            ({"field_id": fid["job"], "op": "in", "values": ["医生", "律师"]}, {1}),
            ({"field_id": fid["job"], "op": "empty"}, {3, 4, 5, 6, 7}),
            ({"field_id": fid["height"], "op": "range", "min": 160, "max": "180"}, {0, 1}),
            ({"field_id": fid["height"], "op": "range", "min": 175.5}, {1, 2}),
            ({"field_id": fid["wedding"], "op": "range", "max": "2021-01-01"}, {0}),
            ({"field_id": fid["wedding"], "op": "not_empty"}, {0, 2}),
            ({"field_id": fid["skin"], "op": "eq", "value": "油性"}, {1}),
            ({"field_id": fid["likes"], "op": "in", "values": ["口红", "面霜"]}, {0, 1, 2}),
            ({"field_id": fid["likes"], "op": "eq", "value": "香水"}, {1}),
        ]
        for condition, expected in cases:
            rule = segment_of({"type": "field", **condition})
            members = {people.index(m.external_userid) for m in rules.members(rule, None)}
            assert members == expected, condition
            assert rules.count(rule, None) == len(expected), condition
            assert rules.parse_rule(rule.dump()) == rule  # what is saved reads back the same
        both = segment_of(
            {"type": "field", "field_id": fid["job"], "op": "eq", "value": "教师"},
            {"type": "field", "field_id": fid["likes"], "op": "eq", "value": "口红"},
        )
        explained = rules.explain(both, None)
        assert [s["alone"] for s in explained["steps"]] == [2, 2] and explained["count"] == 1
        assert rules.why(both, customer(people[0]))["member"] is True


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"field_id": 999, "op": "eq", "value": "x"}, "没有这个字段"),
        ({"field_id": "job", "op": "eq", "value": "x"}, "请选择字段"),
        ({"op": "between", "value": "x"}, "这种字段不能这样比较"),
        ({"op": "range", "min": 1}, "这种字段不能这样比较"),  # not on text
        ({"op": "eq", "value": ""}, "请填写取值"),
        ({"op": "in", "values": []}, "需要 1–500 个取值"),
    ],
)
def test_a_field_condition_that_cannot_be_evaluated_is_refused(app, people, condition, message):
    with app.app_context():
        job = fields.define_field("职业", "text", "members")
        condition = {"field_id": job.id, **condition}
        with pytest.raises(rules.RuleError) as refused:
            segment_of({"type": "field", **condition})
        assert refused.value.message == message and refused.value.index == 0


def test_a_range_is_read_as_the_field_reads_values(app, people):
    with app.app_context():
        height = fields.define_field("身高", "number", "members")
        with pytest.raises(rules.RuleError) as refused:
            segment_of({"type": "field", "field_id": height.id, "op": "range", "min": 180, "max": 170})
        assert refused.value.message == "下限不能大于上限"
        with pytest.raises(rules.RuleError):
            segment_of({"type": "field", "field_id": height.id, "op": "eq", "value": "tall"})
