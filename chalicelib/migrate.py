"""The schema migration: `python -m chalicelib.migrate [--stage STAGE]`.

Applies every pending versioned migration of the configured backends, once,
and exits 0; on failure it prints what went wrong and exits 1. Run it again
and it applies nothing. A stage's environment_variables from
.chalice/config.json are applied first, as `chalice local` does.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence


def stage_environment(project_dir: str, stage: str) -> dict:
    from chalice.config import Config

    with open(os.path.join(project_dir, ".chalice", "config.json")) as handle:
        config_from_disk = json.load(handle)
    config = Config(chalice_stage=stage, config_from_disk=config_from_disk)
    return dict(config.environment_variables)


def migrate() -> dict:
    """Apply pending migrations; {database path: versions applied}."""
    from chalicelib import factory
    from chalicelib.queue.embedded import MIGRATIONS as QUEUE_MIGRATIONS
    from chalicelib.sqlite_db import Database
    from chalicelib.store.sqlite import MIGRATIONS as STORE_MIGRATIONS

    settings = factory.current_settings()
    applied = {}
    targets = []
    if settings.store == "sqlite":
        targets.append((settings.db_path, "tasks", STORE_MIGRATIONS))
    if settings.queue == "embedded":
        targets.append((settings.queue_file, "queue", QUEUE_MIGRATIONS))
    for path, component, migrations in targets:
        db = Database(path, synchronous=settings.sqlite_synchronous)
        try:
            applied[f"{path} ({component})"] = db.migrate(component, migrations)
        finally:
            db.close()
    return applied


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev", help="Chalice stage whose environment to use")
    parser.add_argument("--project-dir", default=".", help="the Chalice project folder")
    args = parser.parse_args(argv)
    try:
        os.environ.update(stage_environment(args.project_dir, args.stage))
        applied = migrate()
    except Exception as exc:  # a migration that fails says why and exits non-zero
        print(f"migration failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for path, versions in applied.items():
        done = ", ".join(map(str, versions)) if versions else "nothing (up to date)"
        print(f"migration complete: {path}: applied {done}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
