"""What the shell's ``display FILE`` shows: a picture or HTML as a rich output.

The shell function sends the file's bytes (base64) in a framing marker
(workshop.shell.framing); the kind is told by the bytes, not the name, so
``curl ... | display`` works too.
"""

from __future__ import annotations

import base64
import binascii
import html

from .records import NO_MATHS

_IMAGES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
           (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))


def display_bundle(name: str, data_b64: str) -> dict[str, str]:
    """The MIME bundle of a display_data message for the file's bytes."""
    try:
        data = base64.b64decode(data_b64)
    except (binascii.Error, ValueError):
        data = b""
    shown = "stdin" if name == "-" else name
    size = f"{len(data)} bytes"
    for magic, mime in _IMAGES:
        if data.startswith(magic):
            return {mime: base64.b64encode(data).decode("ascii"), "text/plain": f"[{shown}: {mime}, {size}]"}
    text = data.decode("utf-8", "replace")
    head = text.lstrip("\ufeff \t\r\n")[:2048].lower()
    if head.startswith("<svg") or (head.startswith(("<?xml", "<!--", "<!doctype svg")) and "<svg" in head):
        return {"image/svg+xml": text, "text/plain": f"[{shown}: image/svg+xml, {size}]"}
    if head.startswith("<"):
        # the page's own $...$ is not maths either
        return {"text/html": f"<div class='{NO_MATHS}'>{text}</div>", "text/plain": f"[{shown}: HTML, {size}]"}
    what = "is empty" if not data else f"is not a PNG, JPEG, GIF, SVG or HTML file ({size})"
    return {"text/plain": f"display: {shown} {what}", "text/html": f"<pre class='{NO_MATHS}'>display: "
            f"{html.escape(shown)} {html.escape(what)}</pre>"}
