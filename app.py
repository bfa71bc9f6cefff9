from chalice import Chalice, NotFoundError, Rate, Response

from chalicelib import actions, cli, correlation, dashboard, factory, http_errors, openapi, same_origin
from chalicelib.dead_letters import DeadLetter
from chalicelib.local import runtime
from chalicelib.validation import (media_type_problem, parse_idempotency_key, parse_list_query,
                                   parse_new_task, parse_no_input, parse_series_query, parse_wait)

app = Chalice(app_name="task-queue")

# The seed's consumer: prefetch 5, concurrency 2.
TASKS_QUEUE = "tasks"
DEAD_LETTER_QUEUE = "tasks-dlq"  # where the queue's redrive policy moves a message it gave up on
BATCH_SIZE = 5
MAXIMUM_CONCURRENCY = 2


@app.middleware("http")
def http_edges(event, get_response):
    request_id = correlation.request_id_of(event.context, event.headers)
    token = correlation.current.set(request_id)
    try:
        response = refusal(event) or http_errors.as_problem(get_response(event))
    finally:
        correlation.current.reset(token)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers[correlation.HEADER] = request_id
    return response


def refusal(event):
    """A state change sent from another site's page (403), or a body that is not JSON
    (415); only where the route takes the method: any other method is Chalice's 405."""
    if event.method not in app.routes.get(event.path, {}):
        return None
    problem = same_origin.cross_site_problem(event.method, event.headers)
    if problem:
        return http_errors.problem(403, problem)
    problem = media_type_problem(event.method, event.headers, bool(event.raw_body))
    return http_errors.problem(415, problem) if problem else None


def accepted(task, replayed=False):
    headers = {"Location": f"/tasks/{task.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(body={"id": task.id, "status": task.status.value}, status_code=202, headers=headers)


@app.route("/tasks", methods=["POST"])
@http_errors.translated
def create_task():
    request = app.current_request
    service = factory.service()
    new = parse_new_task(request.raw_body, service.max_body_bytes)
    key = parse_idempotency_key(request.headers)
    submission = service.submit(new, idempotency_key=key, request_id=correlation.current.get())
    return accepted(submission.task, submission.replayed)


@app.route("/tasks", methods=["GET"])
@http_errors.translated
def list_tasks():
    query = parse_list_query(app.current_request.query_params)
    return factory.service().list(query).to_json()


@app.route("/tasks/{task_id}", methods=["GET"])
@http_errors.translated
def get_task(task_id):
    wait = parse_wait(app.current_request.query_params)
    task = factory.service().get(task_id, wait)
    if task is None:
        raise NotFoundError(f"no task with id {task_id}")
    return task.to_json()


@app.route("/tasks/{task_id}", methods=["DELETE"])
@http_errors.translated
def delete_task(task_id):
    factory.service().delete(task_id)
    return Response(body="", status_code=204)


@app.route("/tasks/{task_id}/cancel", methods=["POST"])
@http_errors.translated
def cancel_task(task_id):
    parse_no_input(app.current_request.raw_body)
    return factory.service().cancel(task_id).to_json()


@app.route("/tasks/{task_id}/retry", methods=["POST"])
@http_errors.translated
def retry_task(task_id):
    parse_no_input(app.current_request.raw_body)
    return accepted(factory.service().retry(task_id))


@app.route("/actions", methods=["GET"])
@http_errors.translated
def list_actions():
    return factory.catalog().describe()


@app.route("/stats", methods=["GET"])
@http_errors.translated
def stats():
    return factory.service().stats()


@app.route("/stats/series", methods=["GET"])
@http_errors.translated
def stats_series():
    query = parse_series_query(app.current_request.query_params, actions.ACTIONS)
    return factory.service().series(query)


@app.route("/", methods=["GET"])
def dashboard_page():
    return dashboard.response("index.html")


@app.route("/assets/{name}", methods=["GET"])
def dashboard_asset(name):
    return dashboard.response(name)


@app.route("/openapi.json", methods=["GET"])
def openapi_document():
    return openapi.document()


@app.on_sqs_message(queue=TASKS_QUEUE, batch_size=BATCH_SIZE,
                    maximum_concurrency=MAXIMUM_CONCURRENCY, name="process_tasks")
def process_tasks(event):
    failed = factory.worker().process_batch(
        (record.to_dict()["messageId"], record.receipt_handle, record.body) for record in event
    )
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


@app.on_sqs_message(queue=DEAD_LETTER_QUEUE, batch_size=10, name="process_dead_letters")
def process_dead_letters(event):
    failed = factory.dead_letters().process_batch(
        DeadLetter(record.to_dict()["messageId"], record.body) for record in event
    )
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


@app.schedule(Rate(1, unit=Rate.MINUTES), name="recover_tasks")
def recover_tasks(event):
    return factory.recovery().run()


cli.refuse_unsupported_command()
runtime.start_if_serving_locally(app)
