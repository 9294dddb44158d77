from collections.abc import Mapping, Sequence
from os import PathLike

from ._core import Response

CHUNK: int
SMALL_FILE: int

def FileResponse(
    path: str | PathLike[str],
    *,
    code: int = 200,
    mime_type: str | None = None,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
) -> Response:
    """A file, with ETag, Last-Modified, 304 Not Modified and Range."""
    ...
