"""What `chalice local`'s autoreload watches: the code, not what the service writes.

Chalice restarts the server when any file under the project changes. Every
write of the service changes its SQLite files (`data/tasks.db` and its `-wal`
and `-shm`), and Python writes `__pycache__` when it imports, so an unmended
watcher restarts the server over and over while it works. Here both of
Chalice's watchers (its stat() poller, and the watchdog one when watchdog is
installed) pass over the files the service and its tools write; an edit to
`app.py`, `chalicelib/` or `.chalice/` still restarts the server.
"""
from __future__ import annotations

import os
from typing import Iterable, Iterator

# Top-level folders of generated files: the databases, build output, tools' caches.
GENERATED_FOLDERS = frozenset({"data", "build", ".venv", "venv", ".git", ".pytest_cache", ".schemathesis",
                               "node_modules", "bench"})
GENERATED_SUFFIXES = (".pyc", ".db", ".sqlite", ".sqlite3", "-wal", "-shm", "-journal", ".log", ".tmp", "~")


class Ignored:
    """Which paths under `project_dir` the watcher passes over: generated folders,
    `__pycache__`, database and log files, and the configured database files
    wherever they are."""

    def __init__(self, project_dir: str, database_files: Iterable[str] = ()) -> None:
        self._root = os.path.abspath(project_dir)
        self._databases = {os.path.realpath(path) + suffix for path in database_files
                           for suffix in ("", "-wal", "-shm", "-journal")}

    def __call__(self, path: str) -> bool:
        # Where the path sits in the project decides, not where a link points:
        # .venv/bin/python links outside the project and is still under .venv.
        where = os.path.abspath(path)
        if where.endswith(GENERATED_SUFFIXES) or os.path.realpath(path) in self._databases:
            return True
        relative = os.path.relpath(where, self._root)
        if relative.startswith(os.pardir):
            return False
        parts = relative.split(os.sep)
        return parts[0] in GENERATED_FOLDERS or "__pycache__" in parts

    def walk(self, root_dir: str) -> Iterator[str]:
        """Every watched file under `root_dir`, never entering an ignored folder."""
        for folder, subfolders, files in os.walk(root_dir):
            subfolders[:] = [name for name in subfolders if not self(os.path.join(folder, name))]
            for name in files:
                path = os.path.join(folder, name)
                if not self(path):
                    yield path


def install(ignored: Ignored) -> None:
    """Teach Chalice's watchers to pass over what `ignored` names. The watcher may
    have started before this runs (app.py is imported in the server's thread), so
    the stat poller also drops ignored paths it already recorded."""
    from chalice.cli.filewatch.stat import StatFileWatcher

    poll = getattr(StatFileWatcher._single_pass_poll, "__wrapped__", StatFileWatcher._single_pass_poll)

    def single_pass_poll(watcher, root_dir, callback):
        watcher._mtime_cache = {path: mtime for path, mtime in watcher._mtime_cache.items() if not ignored(path)}
        poll(watcher, root_dir, callback)

    single_pass_poll.__wrapped__ = poll
    StatFileWatcher._single_pass_poll = single_pass_poll
    StatFileWatcher._recursive_walk_files = lambda watcher, root_dir: ignored.walk(root_dir)
    try:
        from chalice.cli.filewatch.eventbased import WatchdogRestarter
    except ImportError:  # watchdog is not installed: Chalice uses the stat poller
        return
    on_event = getattr(WatchdogRestarter.on_any_event, "__wrapped__", WatchdogRestarter.on_any_event)

    def on_any_event(restarter, event):
        if not ignored(event.src_path) or (getattr(event, "dest_path", "") and not ignored(event.dest_path)):
            on_event(restarter, event)

    on_any_event.__wrapped__ = on_event
    WatchdogRestarter.on_any_event = on_any_event
