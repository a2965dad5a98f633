"""`wsgi.file_wrapper`: marks a file so the server can send it with sendfile. No socket here."""

from __future__ import annotations

import io
import os
from typing import Any, Iterator


class FileWrapper:
    """PEP 3333 file wrapper: iterable in blocks; the server sends real files with sendfile."""

    def __init__(self, filelike: Any, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            block = read(self.blksize)
            if not block:
                return
            yield block

    def sendfile_region(self) -> tuple[Any, int, int] | None:
        """(file, offset, count) when the file can go out with sendfile, else None.

        Only plain files opened by `open(..., 'rb')` qualify: their `close()` is known to be
        safe to call from the event loop once the transfer ends.
        """
        f = self.filelike
        if type(f) not in (io.BufferedReader, io.FileIO):
            return None
        try:
            fd = f.fileno()
            st = os.fstat(fd)
            offset = f.tell()
        except (OSError, ValueError):
            return None
        if not (st.st_mode & 0o170000 == 0o100000):  # S_ISREG
            return None
        return f, offset, max(0, st.st_size - offset)
