"""Rollout commands: a ``Command`` written into the ``zdr.io/command`` annotation, then its result.

The plugin never writes ``spec`` (no GitOps drift): it merge-patches one annotation on the
rollout's metadata. The operator handles each command once and records it, by id, in
``status.lastCommand`` (Accepted or Rejected, with a message); the plugin waits for that record.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from zdr.api import COMMAND_ANNOTATION, SINGULAR, Command, CommandVerb, command_annotation
from zdr.cli.cluster import EXIT_TIMEOUT, CliError, Connection, follow_rollout, get_rollout

Json = dict[str, Any]


def new_command_id(now: datetime) -> str:
    """A unique, sortable id: the UTC time plus a random suffix."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def build_command(
    verb: CommandVerb,
    *,
    full: bool = False,
    to_revision: int | None = None,
    requested_by: str | None = None,
    now: datetime | None = None,
) -> Command:
    """The request object for ``verb``; ``full`` is only for promote, ``to_revision`` only for undo."""
    if full and verb != "promote":
        raise CliError("--full applies to promote only")
    if to_revision is not None and verb != "undo":
        raise CliError("--to-revision applies to undo only")
    now = now or datetime.now(UTC)
    return Command(
        id=new_command_id(now),
        verb=verb,
        full=full,
        to_revision=to_revision,
        requested_at=now,
        requested_by=requested_by,
    )


def annotation_patch(command: Command) -> dict[str, str]:
    """The annotations to merge into ``metadata.annotations``."""
    return {COMMAND_ANNOTATION: command_annotation(command)}


@dataclass(frozen=True)
class Outcome:
    """What became of a command."""

    state: Literal["Accepted", "Rejected", "Superseded", "Pending"]
    message: str

    @property
    def ok(self) -> bool:
        return self.state == "Accepted"


def outcome_of(obj: Json, command_id: str) -> Outcome | None:
    """The command's result as recorded in the rollout, or None while the operator has not handled it."""
    last = (obj.get("status") or {}).get("lastCommand") or {}
    if last.get("id") == command_id:
        result = last.get("result")
        state: Literal["Accepted", "Rejected"] = "Accepted" if result == "Accepted" else "Rejected"
        return Outcome(state, str(last.get("message") or ""))
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(COMMAND_ANNOTATION)
    if text and _annotation_id(text) != command_id:
        return Outcome(
            "Superseded", "another command replaced it in the annotation before the operator read it"
        )
    return None


def _annotation_id(text: str) -> str | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return str(body.get("id")) if isinstance(body, dict) else None


def wait_for_outcome(conn: Connection, name: str, command_id: str, timeout: float) -> Outcome:
    """Follow the rollout until ``status.lastCommand`` names the command (or it is replaced)."""
    deadline = time.monotonic() + timeout
    for obj in follow_rollout(conn, name, deadline):
        found = outcome_of(obj, command_id)
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            break
    last = get_rollout(conn, name)
    found = outcome_of(last, command_id)
    if found is not None:
        return found
    return Outcome("Pending", "")


def describe_request(command: Command, name: str, namespace: str) -> str:
    flags = ""
    if command.full:
        flags += " --full"
    if command.to_revision is not None:
        flags += f" --to-revision {command.to_revision}"
    return f'{command.verb}{flags} of {SINGULAR} "{name}" in namespace "{namespace}"'


def pending_error(command: Command, name: str, namespace: str, timeout: float) -> CliError:
    return CliError(
        f"{describe_request(command, name, namespace)} was written (command id {command.id}) but the "
        f"operator did not answer within {timeout:g}s; is it running and watching namespace "
        f'"{namespace}"? Its answer will appear in status.lastCommand',
        exit_code=EXIT_TIMEOUT,
    )
