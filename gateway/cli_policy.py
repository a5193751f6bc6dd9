"""``gateway policy`` and ``gateway purge``: the node's sharing policy and retention.

Registered on ``gateway.cli.main``, whose group turns project errors into one line
``error [code]: sentence`` and exit status 2.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from gateway import policy as policy_module
from gateway import purge as purge_module
from gateway.errors import GatewayError


def describe(policy: policy_module.Policy) -> str:
    """A policy in words, one line per rule."""
    if policy.open:
        return (
            "No policy file: every exchange with every member is allowed (rule no-policy). "
            "Write INSTANCE/policy.toml (docs/policy.md)."
        )
    lines = [f"Policy {policy.source}", "", "Agreements (anything else is denied both ways):"]
    if not policy.agreements:
        lines.append("  none: this node exchanges nothing")
    for a in policy.agreements:
        purposes = "every purpose" if a.purposes is None else ", ".join(sorted(a.purposes))
        until = f" until {a.until}" if a.until else ""
        lines.append(
            f"  {a.id}: {a.direction} {', '.join(sorted(a.types))} with {a.peer} "
            f"for {purposes}{until}"
        )
    lines += ["", "Minimisation by audience:"]
    for rule in policy.minimise_rules:
        types = "every type" if rule.types is None else ", ".join(sorted(rule.types))
        lines.append(
            f"  {rule.id}: for {', '.join(sorted(rule.audience))}, in {types}, remove "
            f"{', '.join(rule.drop)}"
        )
    lines += ["", "Retention limits (days; the standard's maximum is 3650):"]
    if not set(policy.retention) - {policy_module.REFUSED}:
        lines.append("  none beyond each message's own retention_days")
    for typ, days in sorted(policy.retention.items()):
        if typ != policy_module.REFUSED:
            lines.append(f"  {typ}: {days}")
    lines.append(
        f"  bytes of refused envelopes: {policy.refused_retention_days()}"
        + ("" if policy_module.REFUSED in policy.retention else " (default)")
    )
    return "\n".join(lines)


@click.group("policy")
def policy_group() -> None:
    """Check and show the node's sharing policy (INSTANCE/policy.toml)."""


@policy_group.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def policy_check(obj: Any, file: Path | None) -> None:
    """Check a policy file (default: the instance's) and print what it allows."""
    path = file or obj.instance / policy_module.POLICY_FILE
    try:
        text = policy_module.read(path)
    except FileNotFoundError as e:
        raise GatewayError(
            "file-not-found",
            f"{path}: no such file; give the policy file to check, or write "
            f"{obj.instance / policy_module.POLICY_FILE} (docs/policy.md)",
        ) from e
    policy = policy_module.parse(text, path)
    click.echo(describe(policy))


@policy_group.command("show")
@click.pass_obj
def policy_show(obj: Any) -> None:
    """The policy in the node's policy.toml now: what a process starting now uses.

    Running processes re-read the file within trust_refresh seconds; while it does
    not parse, or after it was deleted, they keep the last policy they loaded (and
    log an error), which this command does not show."""
    if not obj.instance.is_dir():  # not "no policy: everything allowed"
        raise GatewayError(
            "no-instance",
            f"instance folder {obj.instance} does not exist; pass --instance (or set "
            "GATEWAY_INSTANCE) to the node's folder",
        )
    click.echo(describe(policy_module.load(obj.instance)))


@click.command("purge")
@click.option("--dry-run", is_flag=True, help="Only list what would be purged.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list.")
@click.pass_obj
def purge_command(obj: Any, dry_run: bool, as_json: bool) -> None:
    """Remove the payloads of messages whose retention has ended, and the kept bytes
    of refused envelopes after [retention] refused days (30 by default); keep
    metadata, receipts and audit evidence (dispatchers do this every hour)."""
    node = obj.node()
    now = int(time.time())
    with node.sessions() as session:
        if dry_run:
            items = purge_module.due(session, node.policy(), now)
        else:
            items = purge_module.run(session, node.policy(), now=now, by="cli purge")
    if as_json:
        click.echo(json.dumps([item.__dict__ for item in items]))
        return
    verb = "would purge" if dry_run else "purged"
    for item in items:
        ended = time.strftime("%Y-%m-%d", time.gmtime(item.retention_ends))
        if item.direction == "refused":
            click.echo(
                f"{verb} the kept bytes of refused envelope {item.message} "
                f"(refusal {item.row_id}; kept until {ended})"
            )
            continue
        click.echo(
            f"{verb} {item.part} of {item.direction} {item.typ} {item.message} "
            f"(retention ended {ended})"
        )
    if not items:
        click.echo("Nothing is due for purge.")
