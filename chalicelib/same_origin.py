"""State changes only from this server's own pages, or from clients that are not browsers.

A page on another site can make a browser send a POST without asking first (a
form, a `no-cors` fetch), with the user's network position and credentials. The
browser says where such a request comes from: `Origin` on every POST, PUT, PATCH
and DELETE, and `Sec-Fetch-Site`. A state change whose Origin is not this
server's own (the origin of its Host header), or that the browser marks
cross-site, is refused. Clients that are not browsers (curl, SDKs) send neither,
and so need no header, no body and no Content-Type beyond what the operation takes.

Behind a proxy, the Host that reaches the service must be the one the browser
used (API Gateway passes it on), or the proxy must drop Origin.
"""
from __future__ import annotations

from typing import Mapping, Optional, Tuple
from urllib.parse import urlsplit

from chalicelib.validation import SAFE_METHODS

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _host_and_port(netloc: str, scheme: str) -> Optional[Tuple[str, int]]:
    try:
        parts = urlsplit(f"//{netloc.strip()}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.rstrip("."), port if port is not None else _DEFAULT_PORTS.get(scheme, 0)


def same_origin(origin: str, host: Optional[str]) -> bool:
    """Whether `origin` (an Origin header) names the server that `host` (its Host header) reaches."""
    if not host:
        return False
    try:
        sent = urlsplit(origin.strip())
    except ValueError:
        return False
    if sent.scheme not in _DEFAULT_PORTS or sent.path or sent.query:
        return False  # "null" (a sandboxed or file: page), or not an origin at all
    theirs = _host_and_port(sent.netloc, sent.scheme)
    return theirs is not None and theirs == _host_and_port(host, sent.scheme)


def cross_site_problem(method: str, headers: Mapping[str, str]) -> Optional[str]:
    """Why a request that may change state is refused as sent from another site, or None."""
    if method.upper() in SAFE_METHODS:
        return None
    if (headers.get("sec-fetch-site") or "").strip().lower() == "cross-site":
        return ("the browser marks this request as sent from a page on another site (Sec-Fetch-Site: "
                "cross-site), which may not change tasks here: use this server's dashboard, or a client "
                "that is not a browser")
    origin = headers.get("origin")
    if origin is not None and not same_origin(origin, headers.get("host")):
        return (f"this request comes from a page on another origin ({origin[:100]}), which may not change "
                "tasks here: use this server's dashboard, or a client that is not a browser")
    return None
