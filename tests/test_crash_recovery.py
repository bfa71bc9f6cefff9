"""kill -9 the real `chalice local` while clients submit: every task that got a 202
reaches a final state with the right result; none is lost, created twice or
completed twice."""
import collections
import http.client
import random
import threading
import time
import uuid

import pytest

from tests.local_server import LocalServer

pytestmark = pytest.mark.e2e

TASKS = 1000
CLIENTS = 8
KILLS = 3


def test_every_accepted_task_completes_exactly_once_across_kill_9(tmp_path):
    server = LocalServer(tmp_path, env={
        "TASKS_WORK_DELAY_MS": "2",
        "TASKS_VISIBILITY_TIMEOUT_S": "2",
        "TASKS_MAX_RECEIVE_COUNT": "1000",
        "TASKS_LEASE_S": "3",
        "TASKS_STALE_AFTER_S": "3",
        "TASKS_RECOVERY_INTERVAL_S": "1",
    }).start()
    accepted = {}  # task id -> expected output
    lock = threading.Lock()
    per_client = TASKS // CLIENTS

    def client(seed):
        rng = random.Random(seed)
        for _ in range(per_client):
            numbers = [rng.randint(-1000, 1000) for _ in range(rng.randint(0, 5))]
            key = str(uuid.uuid4())  # a retried request is the same task, never a second one
            while True:
                try:
                    status, body = server.call("POST", "/tasks", {"action": "sum", "data": {"numbers": numbers}},
                                               headers={"Idempotency-Key": key})
                except (OSError, http.client.HTTPException):
                    status = None  # down, or died mid-request: send the same request again
                if status == 202:
                    with lock:
                        assert accepted.setdefault(body["id"], sum(numbers)) == sum(numbers)
                    break
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    rng = random.Random(1234)
    kills = 0
    try:
        while kills < KILLS:
            target = (kills + 1) * TASKS // (KILLS + 1) + rng.randint(-50, 50)
            assert server.wait_until(lambda: len(accepted) >= target, timeout=60)
            time.sleep(rng.uniform(0, 0.2))
            server.kill()
            kills += 1
            time.sleep(rng.uniform(0, 0.3))
            server.start()
        for thread in threads:
            thread.join(120)
        assert len(accepted) == per_client * CLIENTS

        def all_final():
            tasks = server.all_tasks()
            return tasks if all(t["status"] in ("completed", "failed") for t in tasks) else None

        tasks = server.wait_until(all_final, timeout=90, interval=0.5)
        assert tasks, "some tasks never reached a final state"
    finally:
        server.stop()

    by_id = {t["id"]: t for t in tasks}
    assert set(by_id) == set(accepted), "a task was created that no client was told about, or lost"
    for task_id, expected in accepted.items():
        assert by_id[task_id]["status"] == "completed", by_id[task_id]
        assert by_id[task_id]["result"] == {"output": expected}, by_id[task_id]
    completions = collections.Counter(
        line["task_id"] for line in server.log_lines()
        if line.get("event") == "task_state" and line.get("status") == "completed"
    )
    assert max(completions.values()) == 1, completions.most_common(3)
    assert kills == KILLS
