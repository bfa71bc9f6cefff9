"""Eight clients mix POST and GET against the real `chalice local` for 30 seconds
while the workers run: no 5xx, no "database is locked". Loopback only, bounded."""
import collections
import os
import random
import threading
import time

import pytest

from tests.local_server import LocalServer

pytestmark = pytest.mark.e2e

CLIENTS = 8
SECONDS = float(os.environ.get("TASKS_LOAD_SECONDS", "30"))
MAX_REQUESTS_PER_CLIENT = 20_000


def test_mixed_load_has_no_server_errors_and_no_lock_errors(tmp_path):
    server = LocalServer(tmp_path, env={"TASKS_WORK_DELAY_MS": "1"}).start()
    statuses = collections.Counter()
    errors = []
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS
    created = []

    def client(seed):
        rng = random.Random(seed)
        local = collections.Counter()
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() >= deadline:
                break
            roll = rng.random()
            try:
                if roll < 0.45:
                    status, body = server.call("POST", "/tasks", {"action": rng.choice(["sum", "uppercase"]),
                                                                  "data": {"numbers": [1, 2], "text": "x"}})
                    if status == 202:
                        created.append(body["id"])
                elif roll < 0.75:
                    query = rng.choice(["", "?status=completed", "?status=queued&limit=10", "?limit=1000"])
                    status, _ = server.call("GET", "/tasks" + query)
                elif created:
                    status, _ = server.call("GET", f"/tasks/{rng.choice(created)}")
                else:
                    continue
            except Exception as exc:  # a dropped connection counts against the server too
                with lock:
                    errors.append(repr(exc))
                continue
            local[status] += 1
        with lock:
            statuses.update(local)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 60)
    try:
        log = server.log_path.read_text(errors="replace")
    finally:
        server.stop()
    total = sum(statuses.values())
    print(f"\nload: {total} requests in {SECONDS:.0f} s from {CLIENTS} clients "
          f"({total / SECONDS:.0f}/s), statuses {dict(statuses)}, {len(created)} tasks created")
    assert errors == []
    assert not [code for code in statuses if code >= 500], statuses
    assert set(statuses) <= {200, 202}
    assert "database is locked" not in log
    assert total > 0 and len(created) > 0
