"""The embedded queue keeps SQS's semantics, and the dispatcher Lambda's."""
import threading
import time

import pytest

from chalicelib.local.dispatcher import Dispatcher
from chalicelib.local.sources import EmbeddedSource
from chalicelib.queue.embedded import MIGRATIONS, EmbeddedQueue, dead_letter_name
from chalicelib.sqlite_db import Database


class FakeClock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def deliver_one_batch(queue, handler):
    """One batch through a dispatcher, its deletes committed (they wait for the next receive)."""
    source = EmbeddedSource(queue)
    Dispatcher(source, handler, "process_tasks", batch_size=5).deliver_one_batch()
    source.flush()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def db(tmp_path):
    database = Database(str(tmp_path / "queue.db"))
    database.migrate("queue", MIGRATIONS)
    yield database
    database.close()


@pytest.fixture
def queue(db, clock):
    return EmbeddedQueue(db, "tasks", visibility_timeout=30, max_receive_count=3, clock=clock)


def test_received_message_is_invisible_until_its_lease_expires(queue, clock):
    message_id = queue.send("a")
    [first] = queue.receive(10)
    assert (first.message_id, first.body, first.receive_count) == (message_id, "a", 1)
    assert queue.receive(10) == []
    clock.advance(29.9)
    assert queue.receive(10) == []
    clock.advance(0.2)
    [second] = queue.receive(10)
    assert second.message_id == message_id and second.receive_count == 2
    assert second.receipt_handle != first.receipt_handle
    assert second.first_received_at_ms == first.first_received_at_ms


def test_only_the_latest_receipt_handle_deletes(queue, clock):
    queue.send("a")
    [first] = queue.receive(1)
    clock.advance(31)
    [second] = queue.receive(1)
    assert queue.delete(first.receipt_handle) is False
    assert queue.depth() == 1
    assert queue.delete(second.receipt_handle) is True
    assert queue.depth() == 0


def test_change_visibility_makes_message_available_again(queue):
    queue.send("a")
    [message] = queue.receive(1)
    assert queue.change_visibility(message.receipt_handle, 0)
    assert [m.body for m in queue.receive(1)] == ["a"]


def test_message_moves_to_dead_letter_queue_after_max_receives(queue, clock, db):
    queue.send("poison")
    for attempt in range(1, 4):
        [message] = queue.receive(1)
        assert message.receive_count == attempt
        clock.advance(31)
    assert queue.receive(1) == []
    assert queue.depth() == 0
    assert queue.depth(dead_letter_name("tasks")) == 1


def test_receive_returns_at_most_the_batch_size_oldest_first(queue, clock):
    for number in range(7):
        queue.send(str(number))
        clock.advance(0.001)
    assert [m.body for m in queue.receive(5)] == ["0", "1", "2", "3", "4"]
    assert [m.body for m in queue.receive(5)] == ["5", "6"]


def test_messages_survive_reopening_the_file(tmp_path, clock):
    path = str(tmp_path / "durable.db")
    first = Database(path)
    first.migrate("queue", MIGRATIONS)
    EmbeddedQueue(first, "tasks", clock=clock).send("kept")
    first.close()
    second = Database(path)
    assert [m.body for m in EmbeddedQueue(second, "tasks", clock=clock).receive(5)] == ["kept"]
    second.close()


def test_dispatcher_caps_batches_in_flight_and_batch_size(db):
    queue = EmbeddedQueue(db, "tasks", visibility_timeout=30)
    for number in range(40):
        queue.send(str(number))
    lock = threading.Lock()
    in_flight, peak, sizes, seen = [0], [0], [], []

    def handler(event, context):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            sizes.append(len(event["Records"]))
            seen.extend(r["body"] for r in event["Records"])
        time.sleep(0.02)
        with lock:
            in_flight[0] -= 1

    dispatcher = Dispatcher(EmbeddedSource(queue), handler, "process_tasks", batch_size=5, concurrency=2,
                            idle_poll_seconds=0.05)
    dispatcher.start()
    deadline = time.monotonic() + 20
    while queue.depth() and time.monotonic() < deadline:
        time.sleep(0.02)
    dispatcher.stop()
    assert queue.depth() == 0
    assert sorted(seen, key=int) == [str(n) for n in range(40)]
    assert max(sizes) == 5
    assert peak[0] == 2


def test_dispatcher_deletes_all_but_reported_failures(db):
    queue = EmbeddedQueue(db, "tasks", visibility_timeout=30)
    for body in ("ok-1", "bad", "ok-2"):
        queue.send(body)

    def handler(event, context):
        return {"batchItemFailures": [
            {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "bad"
        ]}

    deliver_one_batch(queue, handler)
    assert queue.depth() == 1
    assert queue.receive(1) == []  # still leased: it comes back after its visibility timeout


def test_handler_that_raises_leaves_the_whole_batch_for_redelivery(db, clock):
    queue = EmbeddedQueue(db, "tasks", visibility_timeout=30, clock=clock)
    queue.send("a")
    queue.send("b")

    def handler(event, context):
        raise RuntimeError("crashed")

    deliver_one_batch(queue, handler)
    assert queue.receive(5) == []
    clock.advance(31)
    assert sorted(m.body for m in queue.receive(5)) == ["a", "b"]


def test_event_is_lambda_shaped(db):
    queue = EmbeddedQueue(db, "tasks")
    queue.send('{"task_id": "x"}')
    events = []
    deliver_one_batch(queue, lambda event, context: events.append((event, context)))
    [(event, context)] = events
    [record] = event["Records"]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"].endswith(":tasks")
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["body"] == '{"task_id": "x"}' and record["receiptHandle"]
    assert context.function_name == "process_tasks"
