"""The panel's reader of customer ids, shared by bulk tagging and mass sends."""

import io

import pytest
from werkzeug.datastructures import FileStorage

from admin.spreadsheet import UploadTooLarge, read_ids


def upload(text: str) -> FileStorage:
    return FileStorage(io.BytesIO(text.encode("utf-8-sig")), filename="ids.csv")


def test_pasted_and_uploaded_ids_in_order_once_each():
    pasted = "wm1\nwm2, wm3，wm4  wm1"
    csv = "external_userid,name\nwm5,张三\n\nwm2,李四\n"
    assert read_ids(pasted, upload(csv), 1024) == ["wm1", "wm2", "wm3", "wm4", "wm5"]
    assert read_ids("", None, 1024) == []


def test_an_upload_over_the_limit_is_refused_whole():
    with pytest.raises(UploadTooLarge) as refused:
        read_ids("", upload("wm0000001\n" * 120_000), 1024 * 1024)  # 1.2 MB
    assert refused.value.max_mb == 1
    assert read_ids("", upload("wm1\n" * 10), 1024) == ["wm1"]


def test_a_carriage_return_alone_ends_a_row():
    """Found by schemathesis: a lone CR in an uploaded CSV was csv.Error (a server error), not a row end."""
    from io import BytesIO

    from admin.spreadsheet import read_pairs

    assert read_pairs(BytesIO(b'a,b\rc\r\nd,"e\rf"'), 1000, "external_userid") == [("a", "b"), ("c", ""), ("d", "e\rf")]
