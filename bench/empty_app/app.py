# The framework's ceiling: a Chalice route that does nothing, measured like POST /tasks.
from chalice import Chalice

app = Chalice(app_name="empty")

# The same server tuning the project's chalice local gets (chalicelib/local/runtime.py),
# so that the ceiling is measured on equal terms.
try:
    from chalice.local import ChaliceRequestHandler
    ChaliceRequestHandler.disable_nagle_algorithm = True
except ImportError:
    pass


@app.route("/", methods=["POST"])
def empty():
    return {}
