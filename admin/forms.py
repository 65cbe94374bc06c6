"""Panel forms (Flask-WTF: every form carries and checks a CSRF token)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    IntegerField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from admin.pickers import ITEM_KINDS as ITEM_KINDS  # the library's kinds, named where the pickers label items
from admin.pickers import PickerField
from bot.models import Role

ROLE_LABELS = {
    Role.admin: _l("管理员"),
    Role.operator: _l("运营"),
    Role.store_manager: _l("店长"),
    Role.viewer: _l("只读"),
}


class SignInForm(FlaskForm):
    username = StringField(_l("用户名"), validators=[DataRequired(_l("请输入用户名")), Length(max=64)])
    password = PasswordField(_l("密码"), validators=[DataRequired(_l("请输入密码")), Length(max=256)])


class CustomerNotesForm(FlaskForm):
    birthday = DateField(_l("生日"), validators=[Optional()])
    notes = TextAreaField(_l("备注"), validators=[Optional(), Length(max=2000, message=_l("备注最多 2000 字"))])


class NewUserForm(FlaskForm):
    username = StringField(
        _l("用户名"), validators=[DataRequired(_l("请输入用户名")), Length(max=64, message=_l("最多 64 个字符"))]
    )
    display_name = StringField(_l("姓名"), validators=[Optional(), Length(max=64)])
    role = SelectField(_l("角色"), choices=[SelectChoice(r.value, label) for r, label in ROLE_LABELS.items()])
    stores = PickerField(_l("负责门店（店长）"), kind="stores", ints=True)
    password = PasswordField(
        _l("初始密码"), validators=[DataRequired(_l("请输入初始密码")), Length(min=10, message=_l("密码至少 10 位"))]
    )


SANDBOX_ACTIONS = {
    "add": _l("客户扫码添加员工"),
    "tag": _l("员工给客户打标签"),
    "delete": _l("客户删除员工（流失）"),
}


class ChannelForm(FlaskForm):
    name = StringField(
        _l("名称"), validators=[DataRequired(_l("请输入名称")), Length(max=64, message=_l("最多 64 个字符"))]
    )
    group_name = StringField(_l("分组"), validators=[Optional(), Length(max=64, message=_l("最多 64 个字符"))])
    staff = PickerField(_l("接待员工"), kind="members")
    stores = PickerField(_l("或整个门店的员工"), kind="stores", ints=True)
    state = StringField(
        _l("渠道 state（留空自动生成）"), validators=[Optional(), Length(max=30, message=_l("state 最多 30 个字符"))]
    )
    tag_ids = PickerField(_l("添加时打标签"), kind="tags")
    skip_verify = BooleanField(_l("客户添加时无需员工确认"), default=True)
    welcome = TextAreaField(
        _l("欢迎语（可用 {customer_name}、{staff_name}、{store_name}）"),
        validators=[Optional(), Length(max=4000, message=_l("欢迎语最多 4000 字"))],
    )
    welcome_items = PickerField(_l("欢迎语附件（素材库中的图片、链接、小程序、视频或文件）"), kind="library", ints=True)
    welcome_image = FileField(_l("或上传一张图片作为附件（同时存入素材库）"))
    remark_template = StringField(
        _l("客户备注模板（如 {customer_name}-{store_name}，填入后最多 20 字）"),
        validators=[Optional(), Length(max=64, message=_l("最多 64 个字符"))],
    )
    daily_cap = IntegerField(
        _l("每名员工每日添加上限（留空不限）"),
        validators=[Optional(), NumberRange(1, 10000, _l("1–10000 之间"))],
    )
    backup_staff = PickerField(_l("备用员工（所有员工达到上限后接待）"), kind="members")
    expires_at = DateTimeLocalField(_l("有效期至（留空长期有效）"), validators=[Optional()], format="%Y-%m-%dT%H:%M")


class PersonalCodesForm(FlaskForm):
    store = SelectField(_l("为哪些员工生成"), coerce=int)
    welcome = TextAreaField(
        _l("欢迎语（可用 {customer_name}、{staff_name}、{store_name}）"),
        validators=[Optional(), Length(max=4000, message=_l("欢迎语最多 4000 字"))],
    )
    tag_ids = PickerField(_l("添加时打标签"), kind="tags")


class EditUserForm(FlaskForm):
    display_name = StringField(_l("姓名"), validators=[Optional(), Length(max=64)])
    role = SelectField(_l("角色"), choices=[SelectChoice(r.value, label) for r, label in ROLE_LABELS.items()])
    stores = PickerField(_l("负责门店（店长）"), kind="stores", ints=True)
    active = BooleanField(_l("启用"))
    new_password = PasswordField(
        _l("重设密码（留空不变）"), validators=[Optional(), Length(min=10, message=_l("密码至少 10 位"))]
    )


class ApiTokenForm(FlaskForm):
    name = StringField(
        _l("名称（用途）"), validators=[DataRequired(_l("请输入名称")), Length(max=128, message=_l("最多 128 个字符"))]
    )
    expires_days = IntegerField(
        _l("有效天数（留空长期有效）"), validators=[Optional(), NumberRange(1, 3650, _l("1–3650 之间"))]
    )


class SandboxBurstForm(FlaskForm):
    action = SelectField(_l("模拟什么"), choices=[SelectChoice(k, v) for k, v in SANDBOX_ACTIONS.items()])
    count = IntegerField(
        _l("客户数"), default=5, validators=[InputRequired(_l("请输入数量")), NumberRange(1, 200, _l("1–200 之间"))]
    )
    state = StringField(_l("渠道 state"), validators=[Optional(), Length(max=30, message=_l("state 最多 30 个字符"))])


class LibraryItemForm(FlaskForm):
    """A library item of one kind; the service checks each kind's fields against WeCom's limits."""

    title = StringField(_l("标题"), validators=[Optional(), Length(max=128, message=_l("最多 128 个字符"))])
    text = TextAreaField(_l("文字内容"), validators=[Optional(), Length(max=4000, message=_l("最多 4000 字"))])
    url = StringField(_l("链接地址"), validators=[Optional(), Length(max=2048, message=_l("链接过长"))])
    description = TextAreaField(_l("链接摘要"), validators=[Optional(), Length(max=512, message=_l("最多 512 字节"))])
    appid = StringField(_l("小程序 AppID"), validators=[Optional(), Length(max=64, message=_l("最多 64 个字符"))])
    page = StringField(
        _l("小程序页面路径（以 .html 结尾）"), validators=[Optional(), Length(max=256, message=_l("最多 256 字节"))]
    )
    file = FileField(_l("文件（图片 JPG/PNG ≤10MB，视频 MP4 ≤10MB，文件 ≤20MB）"))
    cover = FileField(_l("封面图（JPG/PNG，建议 5:4）"))
    # Not checked against the choices here: the service checks the folder (and says so next to this field).
    folder_id = SelectField(_l("文件夹"), coerce=int, default=0, validate_choice=False)
    tag_ids = PickerField(_l("适用标签（侧边栏向带这些标签的客户推荐）"), kind="tags")
    store_ids = PickerField(_l("适用门店（不选为全公司）"), kind="stores", ints=True)
    tracked = BooleanField(_l("雷达链接：记录客户打开并提醒员工"))
    open_tag_ids = PickerField(_l("客户打开后打上的标签"), kind="tags")


class QuickReplyForm(FlaskForm):
    group_id = SelectField(_l("分组"), coerce=int)
    title = StringField(
        _l("标题"), validators=[DataRequired(_l("请输入标题")), Length(max=64, message=_l("最多 64 个字符"))]
    )
    text = TextAreaField(
        _l("话术（可用 {customer_name}、{staff_name}、{store_name}）"),
        validators=[DataRequired(_l("请输入话术")), Length(max=4000, message=_l("最多 4000 字"))],
    )
    store_ids = PickerField(_l("适用门店（不选为全公司）"), kind="stores", ints=True)


class EmptyForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


class WebhookEndpointForm(FlaskForm):
    url = StringField(
        _l("接收地址（URL）"),
        validators=[DataRequired(_l("请输入地址")), Length(max=1024, message=_l("最多 1024 个字符"))],
    )
    description = StringField(_l("说明"), validators=[Optional(), Length(max=256, message=_l("最多 256 个字符"))])
    event_types = SelectMultipleField(_l("推送的事件"), validators=[DataRequired(_l("至少选择一种事件"))])
    alert_userids = StringField(
        _l("停用时通知的成员（企业微信账号，逗号分隔）"),
        validators=[Optional(), Length(max=1400, message=_l("最多 1400 个字符"))],
    )
    enabled = BooleanField(_l("启用"), default=True)


class WebhookReplayForm(FlaskForm):
    start = DateField(_l("从"), validators=[InputRequired(_l("请选择日期"))])
    end = DateField(_l("到"), validators=[InputRequired(_l("请选择日期"))])


class CustomerFieldForm(FlaskForm):
    name = StringField(
        _l("字段名称"), validators=[DataRequired(_l("请输入名称")), Length(max=32, message=_l("最多 32 个字"))]
    )
    kind = SelectField(
        _l("类型"),
        choices=[
            SelectChoice("text", _l("文本")),
            SelectChoice("number", _l("数字")),
            SelectChoice("date", _l("日期")),
            SelectChoice("choice", _l("单选")),
            SelectChoice("choices", _l("多选")),
            SelectChoice("phone", _l("手机号")),
        ],
    )
    editors = SelectField(
        _l("谁可以编辑"),
        choices=[
            SelectChoice("members", _l("员工（侧边栏）与后台编辑者")),
            SelectChoice("users", _l("仅后台编辑者与 API")),
            SelectChoice("admins", _l("仅管理员")),
        ],
    )
    options = TextAreaField(
        _l("选项（单选、多选；每行一个）"), validators=[Optional(), Length(max=4000, message=_l("最多 4000 个字"))]
    )
