"""Headless Chromium (Debian's chromium + chromedriver) through Selenium, and a
stage-prefix proxy standing in for API Gateway's /api/ in front of chalice local."""
from __future__ import annotations

import shutil
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (python3 dev.py test installs it)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            return f"{path} not found: install Debian's chromium and chromium-driver (dev.py test does as root)"
    return None


def chromium(user_data_dir: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={user_data_dir}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


class StagePrefixProxy:
    """Serves `prefix` + path by forwarding path to `upstream`, as API Gateway's stage does.
    With `api_key`, it also refuses as API Gateway does in TASKS_API_AUTH=api_key mode:
    403 for an API call without that x-api-key; the dashboard's page and files are public."""

    def __init__(self, upstream: str, prefix: str = "/api", api_key: str = None) -> None:
        self.prefix = prefix
        self.refused: list = []  # (path, the key sent) of each refused request
        self.keyed: list = []  # paths of the API calls that came with the right key
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self):
                if not self.path.startswith(proxy.prefix + "/"):
                    self.send_error(404)
                    return
                path = self.path[len(proxy.prefix):]
                if api_key is not None and path != "/" and not path.startswith("/assets/"):
                    if self.headers.get("x-api-key") != api_key:
                        proxy.refused.append((path, self.headers.get("x-api-key")))
                        body = b'{"message":"Forbidden"}'
                        self.send_response(403)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                    proxy.keyed.append(path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                request = urllib.request.Request(
                    upstream + self.path[len(proxy.prefix):], data=body, method=self.command,
                    headers={k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")})
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        status, headers, payload = response.status, response.headers, response.read()
                except urllib.error.HTTPError as error:
                    status, headers, payload = error.code, error.headers, error.read()
                self.send_response(status)
                for name in ("Content-Type", "Location"):
                    if headers.get(name):
                        self.send_header(name, headers[name])
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _forward

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}{prefix}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "StagePrefixProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
