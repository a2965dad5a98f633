"""Static files: safe path resolution, validators, ranges, precompressed variants.

Sans-IO for the network: `StaticFiles.respond` touches the filesystem only and returns a
`StaticResponse` whose body parts are bytes or `FileRegion`s for the server to send (the latter
with `frontdesk.worker.sendfile.sendfile`, on the descriptor reserved in `StaticResponse.spare`).
"""

from ._mounts import (
    DEFAULT_CACHE_CONTROL,
    IMMUTABLE_CACHE_CONTROL,
    Mount,
    anchor_mount,
    parse_mount,
)
from ._static import FileRegion, ReservedFd, StaticFiles, StaticResponse

__all__ = [
    "DEFAULT_CACHE_CONTROL",
    "IMMUTABLE_CACHE_CONTROL",
    "FileRegion",
    "Mount",
    "ReservedFd",
    "StaticFiles",
    "StaticResponse",
    "anchor_mount",
    "parse_mount",
]
