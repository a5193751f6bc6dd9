"""Every ``gateway …`` command and option named in the README and the docs this
project maintains by hand exists in the command-line interface."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from gateway.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "docs/index.md", "docs/policy.md", "docs/security.md"]
DOCS += ["docs/trust-administration.md", "docs/operations.md", "docs/standard.md"]
DOCS += ["deploy/README.md"]
COMMAND = re.compile(r"`gateway((?: [a-z][a-z-]*)+)((?: [^`]*)?)`")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)")


def mentions() -> list[tuple[str, list[str], list[str]]]:
    found = []
    for name in DOCS:
        text = (ROOT / name).read_text(encoding="utf-8")
        for match in COMMAND.finditer(text):
            words = match.group(1).split()
            found.append((name, words, OPTION.findall(match.group(2))))
    return found


def resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The deepest command the words name, and the words left over (arguments)."""
    command: click.Command = main
    ctx = click.Context(main)
    for i, word in enumerate(words):
        if not isinstance(command, click.Group):
            return command, words[i:]
        sub = command.get_command(ctx, word)
        if sub is None:
            return command, words[i:]
        command = sub
    return command, []


@pytest.mark.parametrize(("doc", "words", "options"), mentions())
def test_named_commands_and_options_exist(doc, words, options):
    command, rest = resolve(words)
    assert command is not main, (doc, words)
    if isinstance(command, click.Group):
        assert not rest, f"{doc}: gateway {' '.join(words)}: no such subcommand {rest[0]!r}"
    known = {"--help"} | {opt for param in command.params for opt in param.opts}
    missing = [o for o in options if o not in known]
    assert not missing, f"{doc}: gateway {' '.join(words)} has no option {missing}"
