"""The dashboard's static files, read from this folder when first asked for."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional, Tuple

from chalice import NotFoundError, Response

_FOLDER = Path(__file__).resolve().parent
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}
ASSETS = ("dashboard.js", "dashboard.css")
# The page runs only its own script and style sheet, talks only to its own API,
# cannot be framed, and sends no Referer elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                                "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@functools.lru_cache(maxsize=None)
def asset(name: str) -> Optional[Tuple[str, str]]:
    """(content, content type) of a dashboard file, or None for a name that is not one."""
    if name != "index.html" and name not in ASSETS:
        return None
    path = _FOLDER / name
    return path.read_text(encoding="utf-8"), _TYPES[path.suffix]


def response(name: str) -> Response:
    found = asset(name)
    if found is None:
        raise NotFoundError(f"no dashboard file named {name}")
    content, content_type = found
    return Response(body=content, headers={"Content-Type": content_type, "Cache-Control": "no-cache",
                                           **SECURITY_HEADERS})
