"""Content-Type from a file name, the same on every host and every Python version.

The stdlib `mimetypes` module reads the host's /etc/mime.types, so the same file could be served
as `text/javascript` on one machine and `application/x-javascript` on another; and even its
built-in table changes between Python versions (3.11 has no `.m4a`, `.flac`, `.woff2` or `.xhtml`;
later versions add some). So the table is ours, complete, and nothing else is consulted: an
extension not in it is `application/octet-stream`, everywhere. Types are IANA's registered ones,
or what browsers expect where there is none (nginx's mime.types agrees on all but a few, noted).

Text types (and JavaScript, JSON, SVG, XML, YAML) get `; charset=utf-8`: browsers otherwise guess
the charset of a stylesheet or script from the page, which breaks non-ASCII strings.
"""

from __future__ import annotations

OCTET_STREAM = b"application/octet-stream"

_UTF8 = "; charset=utf-8"

# Media type -> extensions (lowercase, no dot). An extension appears once.
_TYPES: dict[str, tuple[str, ...]] = {
    # The web platform.
    "text/html": ("html", "htm"),
    "text/css": ("css",),
    "text/javascript": ("js", "mjs", "cjs"),  # RFC 9239: the one registered type (nginx: app/js)
    "application/json": ("json", "map"),  # .map: source maps
    "application/ld+json": ("jsonld",),
    "application/geo+json": ("geojson",),
    "application/manifest+json": ("webmanifest",),
    "application/xml": ("xml", "xsl", "rdf", "wsdl"),  # nginx: text/xml
    "application/xhtml+xml": ("xhtml", "xht"),
    "application/rss+xml": ("rss",),
    "application/atom+xml": ("atom",),
    "application/wasm": ("wasm",),
    "text/plain": ("txt", "text", "log", "srt", "c", "h", "pl", "bat", "ksh"),
    "text/csv": ("csv",),
    "text/tab-separated-values": ("tsv",),
    "text/markdown": ("md", "markdown"),
    "text/calendar": ("ics",),
    "text/vcard": ("vcf", "vcard"),
    "text/vtt": ("vtt",),
    "text/x-python": ("py",),
    "application/yaml": ("yaml", "yml"),  # RFC 9512
    "application/toml": ("toml",),
    "application/x-sh": ("sh",),
    # Images.
    "image/svg+xml": ("svg",),
    "image/png": ("png",),
    "image/apng": ("apng",),
    "image/jpeg": ("jpg", "jpeg", "jpe", "jfif"),
    "image/gif": ("gif",),
    "image/webp": ("webp",),
    "image/avif": ("avif",),
    "image/jxl": ("jxl",),
    "image/heic": ("heic",),
    "image/heif": ("heif",),
    "image/bmp": ("bmp",),  # nginx: image/x-ms-bmp
    "image/tiff": ("tif", "tiff"),
    "image/x-icon": ("ico", "cur"),  # nginx's choice; every browser accepts it
    # Fonts.
    "font/woff": ("woff",),
    "font/woff2": ("woff2",),
    "font/ttf": ("ttf",),
    "font/otf": ("otf",),
    "font/collection": ("ttc",),
    "application/vnd.ms-fontobject": ("eot",),
    # Audio.
    "audio/mpeg": ("mp3", "mp2", "mpga"),
    "audio/mp4": ("m4a",),  # nginx: audio/x-m4a
    "audio/aac": ("aac", "adts"),
    "audio/flac": ("flac",),
    "audio/ogg": ("ogg", "oga", "opus", "spx"),  # RFC 7845 §9: an .opus file is Ogg
    "audio/webm": ("weba",),
    "audio/wav": ("wav",),
    "audio/midi": ("mid", "midi"),
    "audio/x-aiff": ("aif", "aiff", "aifc"),
    # Video and streaming.
    "video/mp4": ("mp4", "m4v"),  # nginx: .m4v is video/x-m4v
    "video/webm": ("webm",),
    "video/ogg": ("ogv",),
    "video/quicktime": ("mov", "qt"),
    "video/x-matroska": ("mkv",),
    "video/x-msvideo": ("avi",),
    "video/mpeg": ("mpeg", "mpg", "mpe", "m1v"),
    "video/mp2t": ("ts", "m2ts"),  # MPEG transport stream (HLS segments), not TypeScript
    "video/3gpp": ("3gp", "3gpp"),
    "video/3gpp2": ("3g2",),
    "video/x-flv": ("flv",),
    "application/vnd.apple.mpegurl": ("m3u8", "m3u"),
    "application/dash+xml": ("mpd",),
    # Documents.
    "application/pdf": ("pdf",),
    "application/rtf": ("rtf",),
    "application/postscript": ("ps", "eps", "ai"),
    "application/epub+zip": ("epub",),
    "application/msword": ("doc", "dot"),
    "application/vnd.ms-excel": ("xls",),
    "application/vnd.ms-powerpoint": ("ppt", "pps"),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ("docx",),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ("xlsx",),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ("pptx",),
    "application/vnd.oasis.opendocument.text": ("odt",),
    "application/vnd.oasis.opendocument.spreadsheet": ("ods",),
    "application/vnd.oasis.opendocument.presentation": ("odp",),
    # Archives and compressed files.
    "application/zip": ("zip",),
    "application/gzip": ("gz", "tgz"),
    "application/x-bzip2": ("bz2",),
    "application/x-xz": ("xz",),
    "application/zstd": ("zst",),
    "application/x-7z-compressed": ("7z",),
    "application/vnd.rar": ("rar",),
    "application/x-tar": ("tar",),
    "application/java-archive": ("jar",),
}

# Types that are text in all but name: they get a charset and are worth compressing.
_TEXTUAL = frozenset(
    {
        "text/javascript",
        "application/json",
        "application/manifest+json",
        "application/xml",
        "image/svg+xml",
        "application/yaml",
        "application/toml",
        "application/x-sh",
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
    table: dict[str, bytes] = {}
    for media_type, extensions in _TYPES.items():
        value = (media_type + _UTF8 if _is_textual(media_type) else media_type).encode("ascii")
        for ext in extensions:
            table[ext] = value
    return table


_TABLE = _build_table()

# What precompression is worth it for (already-compressed formats are not in here).
_COMPRESSIBLE_EXTRA = frozenset(
    {
        b"application/wasm",
        b"image/x-icon",
        b"image/bmp",
        b"font/ttf",
        b"font/otf",
        b"font/collection",
        b"application/vnd.ms-fontobject",
        b"application/rtf",
        b"application/postscript",
    }
)


def content_type(name: str) -> bytes:
    """The Content-Type value for a file name (only the last extension counts)."""
    dot = name.rfind(".")
    if dot <= 0:  # no extension, or a bare dotfile name
        return OCTET_STREAM
    return _TABLE.get(name[dot + 1 :].lower(), OCTET_STREAM)


def is_compressible(ctype: bytes) -> bool:
    """Whether a response of this Content-Type shrinks usefully with gzip or brotli."""
    return ctype.endswith(b"; charset=utf-8") or ctype in _COMPRESSIBLE_EXTRA
