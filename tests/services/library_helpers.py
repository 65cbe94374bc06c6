"""Helpers of the content library tests (the ``roles`` fixture is in tests/conftest.py): rows by name, and
small files of each kind WeCom takes."""

import io

import qrcode
from sqlalchemy import select

from bot.extensions import db
from bot.models import Staff, Store, Tag, User

#: the smallest thing the content check takes as an MP4 (``ftyp`` at offset 4)
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64
PDF = b"%PDF-1.4\n" + b"%" * 64
APPID = "wx8bd80126147df384"


def png(text: str = "siyu") -> bytes:
    out = io.BytesIO()
    qrcode.make(text).save(out)
    return out.getvalue()


def user(user_id: int) -> User:
    return db.session.get(User, user_id)


def store(department_id: int) -> Store:
    return db.session.scalar(select(Store).where(Store.department_id == department_id))


def member(userid: str) -> Staff:
    return db.session.scalar(select(Staff).where(Staff.userid == userid))


def tag(name: str) -> str:
    return db.session.scalar(select(Tag.tag_id).where(Tag.name == name))
