"""Hardened parsing for every XML byte that comes in from outside.

defusedxml refuses DTDs, entity declarations and external references, which rules out XXE and the
"billion laughs"; a size cap and a depth/element cap bound the rest.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from bot.wecom.errors import MalformedCallback

MAX_XML_BYTES = 256 * 1024
MAX_ELEMENTS = 2000


def parse_xml(data: bytes | str) -> Element:
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_XML_BYTES:
        raise MalformedCallback("XML too large")
    try:
        # defusedxml has no type information; its parser gives ElementTree's elements.
        root: Element = SafeET.fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise MalformedCallback(f"not well-formed XML: {type(exc).__name__}") from exc
    for count, _ in enumerate(root.iter(), 1):
        if count > MAX_ELEMENTS:
            raise MalformedCallback("too many XML elements")
    if root.tag != "xml":
        raise MalformedCallback("the root element is not <xml>")
    return root


def parse_flat_xml(data: bytes | str) -> dict[str, str]:
    """The direct children of <xml> as text (WeCom's callbacks are flat but for a few lists)."""
    root = parse_xml(data)
    return {child.tag: (child.text or "").strip() for child in root}
