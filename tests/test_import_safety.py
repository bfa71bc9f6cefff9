"""Importing app.py, as chalice package, chalice deploy and Lambda do, has no side effects."""
import os
import subprocess
import sys
import textwrap

from tests.conftest import PROJECT_DIR


def test_importing_app_starts_no_thread_creates_no_file_and_loads_no_boto3(tmp_path):
    script = textwrap.dedent(f"""
        import os, sys, threading
        before = set(os.listdir("."))
        sys.path.insert(0, {str(PROJECT_DIR)!r})
        import app
        assert threading.active_count() == 1, threading.enumerate()
        assert set(os.listdir(".")) == before, set(os.listdir(".")) ^ before
        assert "boto3" not in sys.modules
        assert "chalice.local" not in sys.modules
        print("clean")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKS_", "CHALICE_"))}
    env["AWS_CHALICE_CLI_MODE"] = "true"  # as when chalice package imports the app
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"
