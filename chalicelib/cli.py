"""What the chalice CLI may do with this app.

`chalice deploy` builds a stage from app.py alone: it cannot create the queue,
table, dead-letter queue and alarms that deploy/template.py adds, and the dev
stage keeps tasks in SQLite, which a Lambda has no disk for. So it stops here,
while it imports app.py and before it creates anything, and names the command
that deploys the service.
"""
from __future__ import annotations

import os

DEPLOY_COMMAND = "python3 dev.py deploy --stage prod"


def refusal(command: str, stage: str) -> str:
    """The sentence `chalice <command> --stage <stage>` stops with, or '' if it may run."""
    if command != "deploy":
        return ""
    if stage == "prod":
        return (f"task-queue: `chalice deploy` cannot create the prod stage's queue, table and alarms; "
                f"deploy it with `{DEPLOY_COMMAND}`, which packages the app with them")
    return (f"task-queue: the {stage} stage keeps tasks in SQLite, which a Lambda has no disk for; run it "
            f"with `chalice local`, or deploy the cloud stage with `{DEPLOY_COMMAND}`")


def refuse_unsupported_command() -> None:
    """Exit with `refusal`'s sentence when the chalice CLI is importing the app for a
    command that cannot work. Anything else (Lambda, tests, `chalice local` or
    `chalice package`) goes on untouched."""
    if not os.environ.get("AWS_CHALICE_CLI_MODE"):
        return
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return
    sentence = refusal(ctx.info_name, ctx.params.get("stage") or "dev")
    if sentence:
        raise SystemExit(sentence)
