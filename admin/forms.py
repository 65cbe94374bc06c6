"""Panel forms (Flask-WTF: every form carries and checks a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, IntegerField, PasswordField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from bot.models import Role

ROLE_LABELS = {
    Role.admin: "管理员",
    Role.operator: "运营",
    Role.store_manager: "店长",
    Role.viewer: "只读",
}


class SignInForm(FlaskForm):
    username = StringField("用户名", validators=[DataRequired("请输入用户名"), Length(max=64)])
    password = PasswordField("密码", validators=[DataRequired("请输入密码"), Length(max=256)])


class CustomerNotesForm(FlaskForm):
    birthday = DateField("生日", validators=[Optional()])
    notes = TextAreaField("备注", validators=[Optional(), Length(max=2000, message="备注最多 2000 字")])


class NewUserForm(FlaskForm):
    username = StringField(
        "用户名", validators=[DataRequired("请输入用户名"), Length(max=64, message="最多 64 个字符")]
    )
    display_name = StringField("姓名", validators=[Optional(), Length(max=64)])
    role = SelectField("角色", choices=[SelectChoice(r.value, label) for r, label in ROLE_LABELS.items()])
    stores = SelectMultipleField("负责门店（店长）", coerce=int)
    password = PasswordField(
        "初始密码", validators=[DataRequired("请输入初始密码"), Length(min=10, message="密码至少 10 位")]
    )


class SandboxBurstForm(FlaskForm):
    count = IntegerField(
        "客户数", default=5, validators=[InputRequired("请输入数量"), NumberRange(1, 200, "1–200 之间")]
    )
    state = StringField("渠道 state", validators=[Optional(), Length(max=30, message="state 最多 30 个字符")])


class EmptyForm(FlaskForm):
    """A button that changes something: only the CSRF token."""
