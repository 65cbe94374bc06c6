"""A channel's QR code as an image: the PNG download, the printable poster and the assistant's reply.

WeCom's ``qr_code`` is the URL of an image it renders (doc path/92228); Siyu fetches it once, keeps
it as PNG with the channel, and composes posters from it with Pillow.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from bot.extensions import db, redis_conn
from bot.models import Channel, JoinWay
from bot.services.clients import agent_api, agent_id, contact_api, settings
from bot.services.errors import Conflict, translates_wecom_errors
from bot.services.users.accounts import N_
from bot.wecom.errors import DownloadFailed, WeComError

log = logging.getLogger(__name__)

#: CJK fonts Debian ships (fonts-wqy-microhei, fonts-wqy-zenhei, fonts-noto-cjk), tried in order
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
POSTER_SIZE = (1240, 1754)  # A4 at 150 dpi
QR_SIDE = 760
#: an uploaded image's media id lives 3 days (WeCom doc 90253); reuse it for a little less
MEDIA_TTL = int(2.5 * 86400)
INVALID_MEDIA = 40007
#: Pillow refuses (DecompressionBombError) images over twice this many pixels and warns over it; a QR code
#: WeCom renders is a few hundred pixels a side, so anything near this is not a QR code
Image.MAX_IMAGE_PIXELS = 4096 * 4096


class QrImageError(Conflict):
    """The code's image cannot be produced (no code, an unreadable image, no CJK font)."""

    code = "no_qr_code"


class QrDownloadFailed(QrImageError):
    """WeCom's image of the code could not be fetched (an HTTP status, a timeout): WeCom may no longer serve
    the code, and saving the channel again makes a new one."""

    status = 502
    code = "qr_download_failed"


@translates_wecom_errors
def qr_png(channel: Channel | JoinWay) -> bytes:
    """The code (a channel's or a group-join code's) as PNG, fetched from WeCom the first time and kept
    with it; flushes."""
    if channel.qr_png:
        return channel.qr_png
    if not channel.qr_code:
        raise QrImageError(N_("该渠道没有二维码"))
    try:
        raw = contact_api().download(channel.qr_code)
    except DownloadFailed as exc:
        raise QrDownloadFailed(N_("从企业微信下载二维码图片失败：%(reason)s"), reason=exc.errmsg) from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as image:
                image.load()
                out = io.BytesIO()
                image.convert("RGB").save(out, format="PNG", optimize=True)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise QrImageError(N_("企业微信返回的二维码不是图片")) from exc
    channel.qr_png = out.getvalue()
    db.session.flush()
    return channel.qr_png


def _font_path() -> str:
    configured = settings().poster_font
    for candidate in (configured, *FONT_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return candidate
    raise QrImageError(N_("没有可用的中文字体：安装 fonts-wqy-microhei 或设置 SIYU_POSTER_FONT"))


def _centered(draw: ImageDraw.ImageDraw, y: int, text: str, font: ImageFont.FreeTypeFont, fill: str) -> int:
    """Draw one line centred at height ``y``, shrinking nothing: long titles are cut with an ellipsis."""
    width = POSTER_SIZE[0] - 120
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…"
    left = (POSTER_SIZE[0] - draw.textlength(text, font=font)) / 2
    draw.text((left, y), text, font=font, fill=fill)
    box = draw.textbbox((left, y), text, font=font)
    return int(box[3])


def _poster(code_png: bytes, title: str, subtitle: str, call: str, footer: str) -> bytes:
    """A printable A4 poster: a title band (title, subtitle), the code, a call to scan and a footer."""
    code = Image.open(io.BytesIO(code_png)).convert("RGB").resize((QR_SIDE, QR_SIDE), Image.Resampling.NEAREST)
    path = _font_path()
    big, medium, small = (ImageFont.truetype(path, size) for size in (76, 44, 34))
    poster = Image.new("RGB", POSTER_SIZE, "white")
    draw = ImageDraw.Draw(poster)
    draw.rectangle((0, 0, POSTER_SIZE[0], 360), fill="#07a35a")
    _centered(draw, 110, title, big, "white")
    if subtitle:
        _centered(draw, 230, subtitle, medium, "#eafff3")
    top = 470
    poster.paste(code, ((POSTER_SIZE[0] - QR_SIDE) // 2, top))
    y = _centered(draw, top + QR_SIDE + 60, call, medium, "#222222")
    if footer:
        _centered(draw, y + 30, footer, small, "#555555")
    out = io.BytesIO()
    poster.save(out, format="PNG", optimize=True)
    return out.getvalue()


@translates_wecom_errors
def poster_png(channel: Channel, title: str = "") -> bytes:
    """A channel's poster: campaign title, store names, the code, and who it adds."""
    stores = sorted({store.name for member in channel.staff for store in member.stores})
    names = "、".join(member.name or member.userid for member in channel.staff[:5])
    return _poster(qr_png(channel), title.strip() or channel.name, "、".join(stores), "微信扫码，添加专属顾问", names)


@translates_wecom_errors
def join_poster_png(way: JoinWay, group_names: list[str], title: str = "") -> bytes:
    """A group-join code's poster: title, the groups it leads to, the code."""
    return _poster(qr_png(way), title.strip() or way.name, "、".join(group_names[:3]), "微信扫码，加入社群", "")


def send_code_to_member(channel: Channel, userid: str) -> str:
    """Send the code's image to a member through the app; the uploaded media id is reused for 2.5 days."""
    key = f"siyu:media:qr:{channel.id}"
    cached = redis_conn.client.get(key)
    media_id = cached.decode() if isinstance(cached, bytes) else cached
    for fresh in (False, True):
        if not media_id or fresh:
            media_id = agent_api().upload_image(f"{channel.state}.png", qr_png(channel))
            redis_conn.client.set(key, media_id, ex=MEDIA_TTL)
        try:
            agent_api().send_app_image(agent_id(), [userid], str(media_id))
            break
        except WeComError as exc:
            # 40007: the media id is gone before its 3 days (WeCom may drop it); upload once more.
            if exc.errcode != INVALID_MEDIA or fresh:
                raise
    return str(media_id)
