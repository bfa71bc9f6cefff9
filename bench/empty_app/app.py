# The framework's ceiling: a Chalice route that does nothing, measured like POST /tasks.
from chalice import Chalice

app = Chalice(app_name="empty")


@app.route("/", methods=["POST"])
def empty():
    return {}
