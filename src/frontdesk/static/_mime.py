"""Content-Type from a file name, the same on every host.

The stdlib `mimetypes` module reads the host's /etc/mime.types, so the same file could be served
as `text/javascript` on one machine and `application/x-javascript` on another. We use a fixed
table for the types the web actually serves, then the stdlib's *built-in* defaults (a
`MimeTypes()` instance ignores the host files), then `application/octet-stream`.

Text types (and JavaScript, JSON, SVG, XML) get `; charset=utf-8`: browsers otherwise guess the
charset of a stylesheet or script from the page, which breaks non-ASCII strings.
"""

from __future__ import annotations

import mimetypes

OCTET_STREAM = b"application/octet-stream"

_UTF8 = "; charset=utf-8"

# Extension (lowercase, no dot) -> media type. Checked first, so it wins over the stdlib.
_WEB_TYPES = {
    "html": "text/html",
    "htm": "text/html",
    "css": "text/css",
    "js": "text/javascript",  # RFC 9239: text/javascript is the one registered type.
    "mjs": "text/javascript",
    "cjs": "text/javascript",
    "json": "application/json",
    "map": "application/json",  # source maps
    "webmanifest": "application/manifest+json",
    "svg": "image/svg+xml",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "avif": "image/avif",
    "ico": "image/x-icon",  # nginx's choice; every browser accepts it.
    "woff": "font/woff",
    "woff2": "font/woff2",
    "ttf": "font/ttf",
    "otf": "font/otf",
    "txt": "text/plain",
    "csv": "text/csv",
    "md": "text/markdown",
    "xml": "application/xml",
    "wasm": "application/wasm",
    "pdf": "application/pdf",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "wav": "audio/wav",
    "zip": "application/zip",
    "gz": "application/gzip",
    "br": "application/octet-stream",
}

# Types that are text in all but name: they get a charset and are worth compressing.
_TEXTUAL = frozenset(
    {
        "text/javascript",
        "application/javascript",
        "application/json",
        "application/manifest+json",
        "application/xml",
        "image/svg+xml",
    }
)


def _is_textual(media_type: str) -> bool:
    return (
        media_type.startswith("text/")
        or media_type in _TEXTUAL
        or media_type.endswith("+json")
        or media_type.endswith("+xml")
    )


def _build_table() -> dict[str, bytes]:
    builtin = mimetypes.MimeTypes()  # the stdlib's built-in table only, not /etc/mime.types
    table: dict[str, str] = {}
    for ext, media_type in builtin.types_map[True].items():
        table[ext.lstrip(".").lower()] = media_type
    table.update(_WEB_TYPES)
    return {ext: (t + _UTF8 if _is_textual(t) else t).encode("ascii") for ext, t in table.items()}


_TABLE = _build_table()

# What precompression is worth it for (already-compressed formats are not in here).
_COMPRESSIBLE_EXTRA = frozenset({b"application/wasm", b"image/x-icon", b"font/ttf", b"font/otf"})


def content_type(name: str) -> bytes:
    """The Content-Type value for a file name (only the last extension counts)."""
    dot = name.rfind(".")
    if dot <= 0:  # no extension, or a bare dotfile name
        return OCTET_STREAM
    return _TABLE.get(name[dot + 1 :].lower(), OCTET_STREAM)


def is_compressible(ctype: bytes) -> bool:
    """Whether a response of this Content-Type shrinks usefully with gzip or brotli."""
    return ctype.endswith(b"; charset=utf-8") or ctype in _COMPRESSIBLE_EXTRA
