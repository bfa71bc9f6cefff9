"""kill -9 the real `chalice local` while clients submit: every task that got a 202
reaches a final state with the right result, and none is completed twice."""
import collections
import http.client
import random
import threading
import time

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
    }).start()
    accepted = {}  # task id -> expected output
    lock = threading.Lock()
    submitting = threading.Event()
    submitting.set()
    rng = random.Random(1234)

    def client(seed):
        local_rng = random.Random(seed)
        while submitting.is_set():
            with lock:
                if len(accepted) >= TASKS:
                    return
            numbers = [local_rng.randint(-1000, 1000) for _ in range(local_rng.randint(0, 5))]
            try:
                status, body = server.call("POST", "/tasks", {"action": "sum", "data": {"numbers": numbers}})
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)  # the server is down or died mid-request: not accepted
                continue
            if status == 202:
                with lock:
                    accepted[body["id"]] = sum(numbers)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
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
        assert len(accepted) >= TASKS

        def all_final():
            tasks = {t["id"]: t for t in server.all_tasks()}
            pending = [i for i in accepted if tasks.get(i, {}).get("status") not in ("completed", "failed")]
            return tasks if not pending else None

        tasks = server.wait_until(all_final, timeout=90, interval=0.5)
        assert tasks, "some accepted tasks never reached a final state"
    finally:
        submitting.clear()
        server.stop()

    for task_id, expected in accepted.items():
        task = tasks[task_id]
        assert task["status"] == "completed", task
        assert task["result"] == {"output": expected}, task
    completions = collections.Counter(
        line["task_id"] for line in server.log_lines()
        if line.get("event") == "task_state" and line.get("status") == "completed"
    )
    assert max(completions.values()) == 1, completions.most_common(3)
    assert kills == KILLS
