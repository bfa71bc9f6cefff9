"""The stateful model of "a 202 means the task runs, once" (tests/test_model.py)."""
