"""Build a cloud stage's deployable template and package, and lint it.

    python3 dev.py package [--stage prod] [--out build/prod] [--no-lint]

Writes <out>/merge.json (deploy/template.py for this stage), runs
`chalice package --merge-template` into <out> (sam.json + deployment.zip) and
runs cfn-lint on the result.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

from chalice.config import Config

from deploy.template import merge_template

ROOT = Path(__file__).resolve().parent.parent


def stage_config(stage: str) -> Config:
    config_from_disk = json.loads((ROOT / ".chalice" / "config.json").read_text())
    if stage not in config_from_disk.get("stages", {}):
        raise SystemExit(f"no stage {stage!r} in .chalice/config.json")
    return Config(chalice_stage=stage, config_from_disk=config_from_disk)


def app_routes() -> list:
    sys.path.insert(0, str(ROOT))
    from app import app

    return sorted((path, method) for path, entries in app.routes.items() for method in entries)


def handler_name(kind, queue: Optional[str] = None) -> str:
    """The name of the app's one handler of this kind (for SQS, of `queue`)."""
    from app import app

    [source] = [s for s in app.event_sources if isinstance(s, kind) and (queue is None or s.queue == queue)]
    return source.name


def worker_batch_seconds() -> int:
    """What the worker needs for a batch of the longest declared action."""
    from app import BATCH_SIZE
    from chalicelib import actions

    return actions.batch_seconds(BATCH_SIZE)


def build_merge_template(stage: str) -> dict:
    config = stage_config(stage)
    from chalice.app import ScheduledEventConfig, SQSEventConfig

    from app import DEAD_LETTER_QUEUE, TASKS_QUEUE

    worker = handler_name(SQSEventConfig, TASKS_QUEUE)
    environment = config.environment_variables
    worker_config = Config(chalice_stage=stage, function_name=worker,
                           config_from_disk=config.config_from_disk)
    return merge_template(
        worker=worker,
        worker_timeout=max(worker_config.lambda_timeout or 60, worker_batch_seconds()),
        api_stage=config.api_gateway_stage or "api",
        auth=environment.get("TASKS_API_AUTH", "iam"),
        max_receive_count=int(environment.get("TASKS_MAX_RECEIVE_COUNT", "5")),
        routes=app_routes(),
        recovery=handler_name(ScheduledEventConfig),
        dead_letters=handler_name(SQSEventConfig, DEAD_LETTER_QUEUE),
    )


def package(stage: str, out: Path, lint: bool = True, merge_with: Optional[dict] = None) -> Path:
    """Package `stage` into `out`; `merge_with` replaces the stage's own merge template."""
    out.mkdir(parents=True, exist_ok=True)
    merge = out / "merge.json"
    merge.write_text(json.dumps(merge_with or build_merge_template(stage), indent=2))
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    chalice = Path(sys.executable).parent / "chalice"
    subprocess.run([str(chalice), "package", "--stage", stage, "--merge-template", str(merge), str(out)],
                   cwd=ROOT, env=env, check=True)
    template = out / "sam.json"
    if lint:
        subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), str(template)], cwd=ROOT, check=True)
    return template


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--out", help="output folder (default build/<stage>)")
    parser.add_argument("--no-lint", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else ROOT / "build" / args.stage
    template = package(args.stage, out, lint=not args.no_lint)
    print(f"packaged: {template} and {out / 'deployment.zip'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
