"""The dashboard in a real headless Chromium against a chalice local the test starts."""
import json
import re

import pytest

from tests import browser
from tests.conftest import PROJECT_DIR, post_task
from tests.local_server import LocalServer

SCREENSHOTS = PROJECT_DIR / "build" / "screenshots"


def test_stats_counts_statuses_and_queue(client):
    from chalicelib.local.runtime import build_dispatcher
    from app import app

    post_task(client, {"action": "sum", "data": {"numbers": [1]}})
    post_task(client, {"action": "sum", "data": {"numbers": [1e308, 1e308]}})
    build_dispatcher(app).drain()
    post_task(client, {"action": "uppercase"})
    stats = json.loads(client.http.get("/stats").body)
    assert stats["counts"] == {"queued": 1, "running": 0, "completed": 1, "failed": 1, "cancelled": 0}
    assert stats["total"] == 3
    assert stats["queue"] == {"waiting": 1, "in_flight": 0, "delayed": 0, "dead_letter": 0}
    assert 0 <= stats["oldest_queued_age_seconds"] < 60


def test_dashboard_files_are_served_and_others_are_404(client):
    page = client.http.get("/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    html = page.body.decode()
    assert 'src="assets/dashboard.js"' in html and 'href="assets/dashboard.css"' in html
    assert client.http.get("/assets/dashboard.js").headers["Content-Type"].startswith("text/javascript")
    assert client.http.get("/assets/..%2Fapp.py").status_code == 404
    assert client.http.get("/assets/__init__.py").status_code == 404


def test_dashboard_urls_are_relative():
    script = (PROJECT_DIR / "chalicelib" / "dashboard" / "dashboard.js").read_text()
    html = (PROJECT_DIR / "chalicelib" / "dashboard" / "index.html").read_text()
    assert 'fetch("/' not in script and "'/tasks" not in script and '"/tasks' not in script
    assert 'src="/' not in html and 'href="/' not in html
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script


@pytest.fixture
def chrome(tmp_path):
    reason = browser.missing()
    if reason:
        pytest.skip(reason)
    driver = browser.chromium(str(tmp_path / "chrome-profile"))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait(driver, predicate, timeout=20):
    """Until predicate(driver) is true; rows re-render live, so a stale element just means look again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: predicate(d))


def click_row(driver, task_id):
    def clicked(d):
        d.find_element("css selector", f'#task-rows tr[data-id="{task_id}"]').click()
        return True

    wait(driver, clicked)


def by_id(driver, element_id):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def row_status(driver, task_id):
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f'#task-rows tr[data-id="{task_id}"] .badge')
    return rows[0].text if rows else None


def submit(driver, action, data):
    action_field, data_field = by_id(driver, "action"), by_id(driver, "data")
    action_field.clear()
    action_field.send_keys(action)
    data_field.clear()
    data_field.send_keys(data)
    by_id(driver, "submit").click()


def submitted_id(driver):
    text = wait(driver, lambda d: by_id(d, "form-ok").text.startswith("Queued ") and by_id(d, "form-ok").text)
    return text.split()[-1]


@pytest.mark.e2e
def test_dashboard_behind_a_stage_prefix(tmp_path, chrome):
    from selenium.webdriver.support.ui import Select

    server = LocalServer(tmp_path, env={"TASKS_WORK_DELAY_MS": "300"}).start()
    try:
        with browser.StagePrefixProxy(server.base_url) as proxy:
            chrome.get(proxy.base_url)
            wait(chrome, lambda d: by_id(d, "count-queued").text == "0")

            # Submit from the form and watch the task reach completed, live.
            submit(chrome, "uppercase", '{"text": "hello <b>world</b>"}')
            task_id = submitted_id(chrome)
            wait(chrome, lambda d: row_status(d, task_id) == "completed")
            assert by_id(chrome, "count-completed").text == "1"

            # The API's validation errors appear next to their field.
            submit(chrome, "", "{}")
            wait(chrome, lambda d: "action required" in by_id(d, "action-error").text)
            submit(chrome, "sum", "[1, 2]")
            wait(chrome, lambda d: "data must be a JSON object" in by_id(d, "data-error").text)
            assert by_id(chrome, "action-error").text == ""
            submit(chrome, "sum", "{not json")
            wait(chrome, lambda d: "not valid JSON" in by_id(d, "data-error").text)

            # The form offers the declared actions and builds its fields from their schemas.
            wait(chrome, lambda d: {"sum", "uppercase"} <= {
                option.get_attribute("value") for option in d.find_elements("css selector", "#actions option")})
            action_field = by_id(chrome, "action")
            action_field.clear()
            action_field.send_keys("sum")
            numbers = wait(chrome, lambda d: d.find_elements("id", "field-numbers") and by_id(d, "field-numbers"))
            assert "The numbers to add up" in by_id(chrome, "schema-fields").text  # from the schema
            numbers.clear()
            numbers.send_keys("[2, 40]")
            assert json.loads(by_id(chrome, "data").get_attribute("value")) == {"numbers": [2, 40]}
            by_id(chrome, "submit").click()
            built = submitted_id(chrome)
            wait(chrome, lambda d: server.call("GET", f"/tasks/{built}")[1]["result"] == {"output": 42})
            numbers.clear()
            numbers.send_keys('[1, "x"]')
            by_id(chrome, "submit").click()
            wait(chrome, lambda d: "must be number" in by_id(d, "field-error-numbers").text)
            assert by_id(chrome, "data-error").text == ""

            # The list filters by action.
            Select(by_id(chrome, "action-filter")).select_by_value("sum")
            wait(chrome, lambda d: {row.find_elements("css selector", "td")[1].text
                                    for row in d.find_elements("css selector", "#task-rows tr")} == {"sum"})
            Select(by_id(chrome, "action-filter")).select_by_value("")

            # Whatever a task holds shows as text.
            submit(chrome, "echo", '{"text": "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>"}')
            hostile = submitted_id(chrome)
            wait(chrome, lambda d: row_status(d, hostile) == "completed")

            # A failed task, its detail, and a retry.
            submit(chrome, "sum", '{"numbers": [1e308, 1e308]}')
            failed = submitted_id(chrome)
            wait(chrome, lambda d: row_status(d, failed) == "failed")
            Select(by_id(chrome, "status-filter")).select_by_value("failed")
            wait(chrome, lambda d: [r.get_attribute("data-id") for r in
                                    d.find_elements("css selector", "#task-rows tr")] == [failed])
            click_row(chrome, failed)
            wait(chrome, lambda d: by_id(d, "detail-id").text == failed)
            assert "too large" in by_id(chrome, "detail-error").text
            assert json.loads(by_id(chrome, "detail-data").text) == {"numbers": [1e308, 1e308]}
            assert by_id(chrome, "detail-attempts").text == "1"
            first_start = server.call("GET", f"/tasks/{failed}")[1]["started_at"]
            by_id(chrome, "retry").click()
            wait(chrome, lambda d: server.call("GET", f"/tasks/{failed}")[1]["started_at"] != first_start
                 and server.call("GET", f"/tasks/{failed}")[1]["status"] == "failed")
            Select(by_id(chrome, "status-filter")).select_by_value("")

            click_row(chrome, hostile)
            wait(chrome, lambda d: by_id(d, "detail-id").text == hostile)
            assert "<script>window.pwned=1</script>" in by_id(chrome, "detail-data").text
            assert chrome.execute_script("return window.pwned === undefined")

            # The throughput chart holds what /stats/series says, minute by minute.
            def chart_matches_series(d):
                drawn = {(bar.get_attribute("data-minute"), bar.get_attribute("data-outcome")):
                         int(bar.get_attribute("data-count"))
                         for bar in d.find_elements("css selector", "#throughput-chart rect")}
                points = server.call("GET", "/stats/series?minutes=60")[1]["points"]
                expected = {(p["minute"], outcome): p[outcome] for p in points
                            for outcome in ("completed", "failed", "cancelled") if p[outcome]}
                return drawn and drawn == expected

            wait(chrome, chart_matches_series, timeout=30)
            assert chrome.find_elements("css selector", "#latency-chart path.line")
            assert by_id(chrome, "queue-dead").text == "0"
            assert "alert" not in by_id(chrome, "queue-dead").find_element("xpath", "..").get_attribute("class")

            chrome.execute_script("window.scrollTo(0, 0)")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            chrome.save_screenshot(str(SCREENSHOTS / "dashboard.png"))
            chrome.save_screenshot(str(tmp_path / "dashboard.png"))
            assert (SCREENSHOTS / "dashboard.png").stat().st_size > 10_000
    finally:
        server.stop()


@pytest.mark.e2e
def test_dashboard_pages_older_tasks_and_cancels_a_queued_one(tmp_path, chrome):
    server = LocalServer(tmp_path, env={"TASKS_LOCAL_DISPATCHER": "off"}).start()
    try:
        ids = [server.call("POST", "/tasks", {"action": "sum", "data": {"numbers": [n]}})[1]["id"]
               for n in range(25)]
        chrome.get(server.base_url + "/")
        wait(chrome, lambda d: row_status(d, ids[-1]) == "queued")
        assert by_id(chrome, "count-queued").text == "25"
        wait(chrome, lambda d: by_id(d, "older").is_enabled())
        by_id(chrome, "older").click()
        wait(chrome, lambda d: row_status(d, ids[0]) == "queued")
        assert row_status(chrome, ids[-1]) is None
        assert "paused" in by_id(chrome, "live").text
        by_id(chrome, "newer").click()
        wait(chrome, lambda d: row_status(d, ids[-1]) == "queued")

        click_row(chrome, ids[-1])
        wait(chrome, lambda d: by_id(d, "cancel").is_displayed())
        assert not by_id(chrome, "retry").is_displayed()
        by_id(chrome, "cancel").click()
        wait(chrome, lambda d: row_status(d, ids[-1]) == "cancelled")
        assert server.call("GET", f"/tasks/{ids[-1]}")[1]["status"] == "cancelled"
        wait(chrome, lambda d: by_id(d, "count-cancelled").text == "1")

        # A final task can be deleted: it leaves the list, and reads of it are 404.
        wait(chrome, lambda d: by_id(d, "delete").is_displayed())
        by_id(chrome, "delete").click()
        wait(chrome, lambda d: row_status(d, ids[-1]) is None and not by_id(d, "detail").is_displayed())
        assert server.call("GET", f"/tasks/{ids[-1]}")[0] == 404
        wait(chrome, lambda d: by_id(d, "count-cancelled").text == "0")
    finally:
        server.stop()


ATTACKER_PAGE = """<!doctype html><title>loading</title>
<form id="f" method="POST" enctype="text/plain" action="{api}/tasks">
  <input name='{{"action": "from-a-form", "x": "' value='"}}'>
</form>
<script>
  const api = "{api}";
  const sent = [
    fetch(api + "/tasks", {{method: "POST", mode: "no-cors",
      headers: {{"Content-Type": "text/plain;application/json"}}, body: '{{"action": "from-fetch"}}'}}),
    fetch(api + "/tasks/{queued}/cancel", {{method: "POST", mode: "no-cors"}}),
    fetch(api + "/tasks/{failed}/retry", {{method: "POST", mode: "no-cors"}}),
    // Not simple requests: the browser asks first, and sends them only if the server agrees.
    fetch(api + "/tasks/{completed}", {{method: "DELETE"}}),
    fetch(api + "/tasks/{queued}/cancel", {{method: "POST", headers: {{"Content-Type": "application/json"}},
      body: "{{}}"}}),
  ];
  Promise.allSettled(sent).then(() => {{ document.title = "sent"; document.getElementById("f").submit(); }});
</script>"""


@pytest.mark.e2e
def test_a_page_on_another_origin_cannot_change_tasks_and_the_dashboard_on_its_own_can(tmp_path, chrome):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    server = LocalServer(tmp_path, env={"TASKS_WORK_DELAY_MS": "0"}).start()
    queued = server.call("POST", "/tasks", {"action": "sum", "delay_seconds": 3600})[1]["id"]
    failed = server.call("POST", "/tasks", {"action": "sum", "data": {"numbers": [1e308, 1e308]}})[1]["id"]
    completed = server.call("POST", "/tasks", {"action": "sum", "data": {"numbers": [1]}})[1]["id"]
    server.wait_until(lambda: server.call("GET", f"/tasks/{completed}")[1]["status"] == "completed"
                      and server.call("GET", f"/tasks/{failed}")[1]["status"] == "failed")
    first_start = server.call("GET", f"/tasks/{failed}")[1]["started_at"]
    page = ATTACKER_PAGE.format(api=server.base_url, queued=queued, failed=failed, completed=completed).encode()

    class Attacker(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    attacker = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)  # another origin: another port
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        chrome.get(f"http://127.0.0.1:{attacker.server_address[1]}/")
        # The form's navigation lands on the API's refusal.
        wait(chrome, lambda d: "may not change tasks here" in d.find_element("tag name", "body").text)
        log = lambda: server.log_path.read_text()
        refused = server.wait_until(lambda: log().count('"POST /tasks HTTP/1.1" 403') >= 2)
        assert refused, log()[-2000:]
        assert f'"POST /tasks/{queued}/cancel HTTP/1.1" 403' in log()
        assert f'"POST /tasks/{failed}/retry HTTP/1.1" 403' in log()
        assert f'"DELETE /tasks/{completed} HTTP/1.1"' not in log()  # its preflight was not answered yes
        assert {task["id"] for task in server.all_tasks()} == {queued, failed, completed}
        assert server.call("GET", f"/tasks/{queued}")[1]["status"] == "queued"
        assert server.call("GET", f"/tasks/{failed}")[1]["started_at"] == first_start

        # The dashboard, on the server's own origin, does all four.
        chrome.get(server.base_url + "/")
        submit(chrome, "uppercase", '{"text": "mine"}')
        mine = submitted_id(chrome)
        wait(chrome, lambda d: row_status(d, mine) == "completed")
        for task_id, button in ((queued, "cancel"), (failed, "retry"), (completed, "delete")):
            click_row(chrome, task_id)
            wait(chrome, lambda d: by_id(d, "detail-id").text == task_id and by_id(d, button).is_displayed())
            by_id(chrome, button).click()
        assert server.wait_until(lambda: server.call("GET", f"/tasks/{queued}")[1]["status"] == "cancelled")
        assert server.wait_until(lambda: server.call("GET", f"/tasks/{failed}")[1]["started_at"] != first_start)
        assert server.wait_until(lambda: server.call("GET", f"/tasks/{completed}")[0] == 404)
        since_the_dashboard = log().split('"GET / HTTP/1.1"')[-1]
        assert not re.search(r'"(POST|DELETE) [^"]*" 403', since_the_dashboard), since_the_dashboard[-2000:]
    finally:
        attacker.shutdown()
        attacker.server_close()
        server.stop()


@pytest.mark.e2e
def test_dashboard_behind_an_api_key_asks_for_it_once_and_sends_it(tmp_path, chrome):
    server = LocalServer(tmp_path, env={"TASKS_WORK_DELAY_MS": "0"}).start()
    try:
        with browser.StagePrefixProxy(server.base_url, api_key="s3cret-key") as proxy:
            chrome.get(proxy.base_url)  # the page itself needs no key
            wait(chrome, lambda d: by_id(d, "key-form").is_displayed())
            assert proxy.refused and all(key is None for _, key in proxy.refused)

            by_id(chrome, "api-key").send_keys("wrong")
            by_id(chrome, "key-form").submit()
            wait(chrome, lambda d: "refused" in by_id(d, "key-error").text)
            by_id(chrome, "api-key").clear()
            by_id(chrome, "api-key").send_keys("s3cret-key")
            by_id(chrome, "key-form").submit()
            wait(chrome, lambda d: not by_id(d, "key-form").is_displayed()
                 and by_id(d, "count-queued").text == "0")

            submit(chrome, "sum", '{"numbers": [2, 3]}')
            task_id = submitted_id(chrome)
            wait(chrome, lambda d: row_status(d, task_id) == "completed")
            assert "/tasks" in proxy.keyed

            # Kept for the tab: a reload asks no more.
            refused_before = len(proxy.refused)
            chrome.refresh()
            wait(chrome, lambda d: row_status(d, task_id) == "completed")
            assert not by_id(chrome, "key-form").is_displayed() and len(proxy.refused) == refused_before
            assert chrome.execute_script("return sessionStorage.getItem('task-queue-api-key')") == "s3cret-key"
    finally:
        server.stop()


@pytest.mark.e2e
def test_dashboard_for_an_iam_stage_opens_through_chalice_local_on_the_stack(tmp_path, chrome, emulated_stack):
    # In iam mode a browser cannot sign requests: the README opens the dashboard
    # through chalice local --stage prod, on the stack's table and queue.
    server = LocalServer(tmp_path, stage="prod", env={**emulated_stack, "TASKS_LOCAL_DISPATCHER": "off"}).start()
    try:
        chrome.get(server.base_url + "/")
        wait(chrome, lambda d: by_id(d, "count-queued").text == "0" and by_id(d, "queue-dead").text == "0")
        submit(chrome, "uppercase", '{"text": "from the browser"}')
        task_id = submitted_id(chrome)
        wait(chrome, lambda d: row_status(d, task_id) == "queued" and by_id(d, "queue-waiting").text == "1")
        assert not by_id(chrome, "key-form").is_displayed()
        assert server.call("GET", f"/tasks/{task_id}")[1]["data"] == {"text": "from the browser"}
    finally:
        server.stop()
