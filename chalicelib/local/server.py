"""Fixes to `chalice local`'s HTTP server (Chalice 1.34's ChaliceRequestHandler on
http.server), applied only in the process that serves it.

Each mends one upstream behaviour:
- a method it has no do_<METHOD> for (TRACE, QUERY, ...) gets a bare 501 page:
  every method goes through Chalice instead, which answers 405;
- HEAD goes to Chalice as HEAD, which no route takes, so it answers 405 with a
  body, and that body breaks the next response on a kept-alive connection: HEAD
  of a GET route answers as GET does, without the body (RFC 9110, 9.3.2);
- headers and body are written separately, so on a kept-alive connection Nagle's
  algorithm waits for the client's delayed ACK, 40 ms a request: TCP_NODELAY;
- the listen backlog is socketserver's 5, so a burst of clients meets
  connection resets: it is 128;
- any Host is served, so a web page whose name rebinds to 127.0.0.1 can call the
  API from a browser: a Host that is not a loopback name, an address this server
  may be reached at, or one of TASKS_ALLOWED_HOSTS gets 421.
"""
from __future__ import annotations

import ipaddress
import json
from typing import Iterable, Optional

LISTEN_BACKLOG = 128
_BODILESS = "_task_queue_omit_body"


def host_name(header: str) -> str:
    """The name in a Host header, without its port, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    if header.count(":") == 1:
        header = header.split(":", 1)[0]
    return header.rstrip(".")


def host_allowed(header: Optional[str], bound_host: str, allowed: Iterable[str] = ()) -> bool:
    """Whether a request with this Host may be served; `allowed` holds lower-case names.
    Only a name can be rebound to this machine by someone else's DNS, so an address
    literal is safe where the server listens on it (all of them, when bound to 0.0.0.0 or ::)."""
    if header is None:
        return True  # no browser sends a request without Host
    name = host_name(header)
    if name == "localhost" or name.endswith(".localhost") or name in allowed:
        return True
    bound = host_name(bound_host)
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return name == bound
    return address.is_loopback or bound in ("0.0.0.0", "::", "") or name == bound


def _refuse(handler, host: str) -> None:
    detail = (f"Host {host!r} is not served here (a guard against DNS rebinding); use localhost or "
              "127.0.0.1, or add the name to TASKS_ALLOWED_HOSTS")
    body = json.dumps({"type": "about:blank", "title": "Misdirected Request", "status": 421,
                       "detail": detail, "error": detail}).encode()
    handler.close_connection = True  # its body, if any, is not read
    handler.send_response(421)
    handler.send_header("Content-Type", "application/problem+json")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Connection", "close")
    handler.send_header("X-Content-Type-Options", "nosniff")
    handler.end_headers()
    handler.wfile.write(body)


def install(allowed_hosts: Iterable[str]) -> None:
    """Mend the server classes; `allowed_hosts` are the extra names to serve (read
    once: a `chalice local` process keeps its environment)."""
    allowed_hosts = frozenset(host.lower() for host in allowed_hosts)
    from chalice.local import ChaliceRequestHandler, ThreadedHTTPServer

    if getattr(ChaliceRequestHandler, "_task_queue_mended", False):
        return
    generic = ChaliceRequestHandler._generic_handle
    with_body = ChaliceRequestHandler._send_http_response_with_body

    def handle(handler) -> None:
        host = handler.headers.get("Host")
        if not host_allowed(host, handler.server.server_address[0], allowed_hosts):
            _refuse(handler, host)
            return
        head = handler.command == "HEAD"
        setattr(handler, _BODILESS, head)
        if head:
            handler.command = "GET"
        try:
            generic(handler)
        finally:
            if head:
                handler.command = "HEAD"

    def send_with_body(handler, code, headers, body) -> None:
        if not getattr(handler, _BODILESS, False):
            with_body(handler, code, headers, body)
            return
        handler.send_response(code)
        handler.send_header("Content-Length", str(len(body if isinstance(body, bytes) else body.encode())))
        handler.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        handler._send_headers(headers)

    def any_method(handler, name):
        if name.startswith("do_"):
            return handler._generic_handle
        raise AttributeError(name)

    ChaliceRequestHandler._generic_handle = handle
    for method in ("GET", "PUT", "POST", "HEAD", "DELETE", "PATCH", "OPTIONS"):
        setattr(ChaliceRequestHandler, f"do_{method}", handle)
    ChaliceRequestHandler.__getattr__ = any_method
    ChaliceRequestHandler._send_http_response_with_body = send_with_body
    ChaliceRequestHandler.disable_nagle_algorithm = True
    ThreadedHTTPServer.request_queue_size = LISTEN_BACKLOG
    ChaliceRequestHandler._task_queue_mended = True
