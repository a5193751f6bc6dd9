"""``gateway admin``: offline administration of the federation trust list (PROTOCOL §5).

These commands run on an administrator's own machine and need no node, no database and
no network: proposals are files that travel between administrators (USB stick, mail),
and what they compare by phone is printed (fingerprints, SHA-256 of the list). The work
itself is in ``keys.proposal``; commands only read files, call it, and print.

Every refusal is one line ``error [code]: sentence`` on stderr and exit status 2, as in
``gateway.cli``: the ``proposal-...`` and ``trust-...`` codes of ``keys.proposal`` and
``keys.trustlist``, ``key-file-passphrase`` and ``key-file-malformed`` for admin key files,
and, from these commands only, ``proposal-needs-current`` (signing a later version without
the list it replaces), ``not-confirmed``, ``file-exists`` (nothing is ever overwritten but
the proposal being signed or merged into), ``file-not-found`` and ``file-error``.

``gateway.cli``'s ``GatewayGroup`` is not imported: ``gateway.cli`` registers this group,
so importing it back would be an import cycle, and it would pull the database stack onto a
machine that needs none.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from keys.fingerprint import fingerprint
from keys.proposal import (
    DEFAULT_OVERLAP,
    AddAdmin,
    AddKey,
    AddNode,
    AdminKey,
    Change,
    Proposal,
    ProposalError,
    RemoveAdmin,
    RemoveKey,
    RemoveNode,
    RetireKey,
    RevokeKey,
    SetEndpoint,
    SetName,
    SetThreshold,
    bootstrap,
    diff,
    merge,
    propose,
    read_aloud,
    read_current,
    shown,
    sign,
    status,
    when,
)
from keys.sealed import (
    MEMLIMIT_MODERATE,
    OPSLIMIT_MODERATE,
    KeyFileError,
    atomic_write,
    key_file_warnings,
    trusted_target,
)
from keys.trustlist import TrustError, TrustList
from schemas import xb1json
from schemas.errors import WireFormatError

PASSPHRASE_ENV = "GATEWAY_ADMIN_PASSPHRASE"  # noqa: S105 - a variable name, not a secret
# Admin keys guard the whole federation and sign rarely: the same argon2id limits as node
# keys (decision 0004), about a second per unlock.
ADMIN_OPSLIMIT = OPSLIMIT_MODERATE
ADMIN_MEMLIMIT = MEMLIMIT_MODERATE
DAY = 86400


class InputFile(click.Path):
    """A file the command reads: one that is not there is the ``file-not-found`` error
    of every file the commands open (click's own check would make it a usage error)."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        if not os.path.lexists(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), os.fsdecode(path))
        return path


INPUT = InputFile()
OUTPUT = click.Path(dir_okay=False)


def _fail(code: str, message: str) -> NoReturn:
    click.echo(f"error [{code}]: {message}", err=True)
    sys.exit(2)


def reader_gone() -> NoReturn:
    """The reader of the output went away (``gateway trust show | head``): nothing to
    say, and nowhere to say it. Python would complain again at exit about the output
    it could not flush: it goes nowhere."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(141)  # 128 + SIGPIPE, as a shell reports a command the pipe ended


class AdminGroup(click.Group):
    """Turns every project error into one line: ``error [code]: sentence``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (TrustError, KeyFileError) as e:
            _fail(e.code, e.message)
        except BrokenPipeError:
            reader_gone()
        except FileNotFoundError as e:
            folder = Path(os.fsdecode(e.filename)).parent if e.filename is not None else None
            if folder is not None and not folder.is_dir():  # an --out in no folder
                _fail("file-not-found", f"{e.filename}: the folder {folder} does not exist")
            _fail("file-not-found", f"{e.filename}: no such file; check the path given")
        except OSError as e:
            _fail("file-error", f"{e.filename or 'a file'}: {e.strerror}")


class Time(click.ParamType):
    """A time as Unix seconds or ISO 8601 (``2026-05-01``, ``2026-05-01T12:00Z``); UTC if
    no zone is given."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.isascii() and text.isdigit():  # "²" is a digit to isdigit, not to int()
            return int(text)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not a time: give Unix seconds or 2026-05-01T12:00Z", param, ctx)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp())


TIME = Time()


# ---------------------------------------------------------------------------- helpers


def _read_json(path: str, what: str) -> Any:
    try:
        return xb1json.loads(Path(path).read_bytes())
    except WireFormatError as e:
        raise ProposalError("proposal-bad-entry", f"{path} is not a JSON {what}: {e}") from e


def _read_proposal(path: str) -> Proposal:
    return Proposal.from_wire(Path(path).read_bytes())


def _read_current(path: str | None) -> TrustList | None:
    return None if path is None else read_current(Path(path).read_bytes())


def _refuse_existing(*paths: str) -> None:
    for path in paths:
        if os.path.exists(path):
            _fail("file-exists", f"{path} exists; choose another file name, nothing is overwritten")


def _write(path: str, wire: bytes) -> None:
    # Proposals and trust lists are public: readable by all, replaced atomically.
    atomic_write(path, wire + b"\n", mode=0o644)


def _new_passphrase() -> str:
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase:
        return passphrase
    try:
        text: str = click.prompt(
            "Passphrase to seal the admin key", hide_input=True, confirmation_prompt=True
        )
    except click.Abort:
        _fail("key-file-passphrase", f"no passphrase given: set {PASSPHRASE_ENV} or type one")
    return text


def _confirmed(question: str) -> bool:
    """Asked on the standard input; with no answer there (no terminal, or the input
    ended) nothing is signed: check what was shown, then sign with --yes."""
    try:
        return click.confirm(question, default=False)
    except click.Abort:
        _fail(
            "not-confirmed",
            "no answer to confirm with (no terminal?), so nothing was signed or written: "
            "check the proposal shown above, then run the command again with --yes",
        )


def _load_admin_key(path: str) -> AdminKey:
    passphrase = os.environ.get(PASSPHRASE_ENV) or None
    if passphrase is None:
        try:
            passphrase = click.prompt(f"Passphrase of {path}", hide_input=True)
        except click.Abort:
            _fail(
                "key-file-passphrase",
                f"{path} is sealed: set {PASSPHRASE_ENV} or type the passphrase at the prompt",
            )
    with key_file_warnings(path, lambda line: click.echo(line, err=True)):
        return AdminKey.load(path, passphrase)


def _show(proposal: Proposal, current: TrustList | None, path: str) -> None:
    """Header, every change, and the hash to compare by phone (the anchor for version 1)."""
    replaces = "first version" if current is None else f"replaces version {current.version}"
    click.echo(
        f"Proposal: {shown(proposal.federation)} version {proposal.version} ({replaces}), "
        f"issued {when(proposal.issued_at)}, expires {when(proposal.expires)}"
    )
    if current is not None:
        click.echo(f"Current list: SHA-256 {current.sha256.hex()}")
    click.echo("Changes:")
    for line in diff(current, proposal.raw):
        click.echo(f"  {line}")
    click.echo(f"SHA-256 of the proposed list: {proposal.sha256.hex()}")
    click.echo("Read aloud and compare with the other administrators:")
    for line in read_aloud(proposal.sha256):
        click.echo(f"  {line}")
    if proposal.version == 1:
        click.echo(
            "This hash is the anchor: once signed, every node installs the list with "
            f"'gateway trust install {path} --anchor {proposal.sha256.hex()}'."
        )


def _print_status(wire: bytes, current: TrustList | None) -> None:
    for line in status(wire, current).lines():
        click.echo(line)


# ---------------------------------------------------------------------------- commands


@click.group(cls=AdminGroup)
def admin() -> None:
    """Offline administration of the federation trust list.

    Runs on an administrator's own machine and needs no node. Admin keys are sealed
    with a passphrase from GATEWAY_ADMIN_PASSPHRASE (or a prompt). A proposal is a trust
    list file collecting signatures: once signed by enough administrators of the current
    and of the proposed version, nodes install it with 'gateway trust install'.
    """


@admin.command("keygen")
@click.option("--label", required=True, help="Who holds the key, e.g. 'A. Sadykova, KZ MVD'.")
@click.option(
    "--out",
    required=True,
    type=OUTPUT,
    help="Sealed key file to write; the public part goes to OUT.pub.json.",
)
def keygen(label: str, out: str) -> None:
    """Create an administrator key, sealed with a passphrase asked twice.

    Send OUT.pub.json to the other administrators and read them the fingerprint by phone.
    """
    public_file = f"{out}.pub.json"
    _refuse_existing(out, public_file)
    key = AdminKey.generate(label)
    key.save(out, _new_passphrase(), opslimit=ADMIN_OPSLIMIT, memlimit=ADMIN_MEMLIMIT)
    try:
        _write(public_file, xb1json.dumps(key.entry()))
    except BaseException:
        # Both files or neither: a key without its public part could not be made again
        # (the command refuses an existing key file), and nobody could be sent it.
        with contextlib.suppress(OSError):
            os.unlink(trusted_target(out))  # the file written (a link to it stays)
        raise
    click.echo(f"Admin key {shown(label)} sealed in {out} (keep it and its passphrase safe).")
    click.echo(f"Public part in {public_file}: send it to the other administrators.")
    click.echo(f"  kid {key.kid}")
    click.echo(f"  fingerprint {fingerprint(key.public)}")


@admin.command("bootstrap")
@click.option("--federation", required=True, help="Name of the federation, e.g. central-asia.")
@click.option(
    "--admin",
    "admin_files",
    multiple=True,
    required=True,
    type=INPUT,
    help="An administrator's public file (KEY.pub.json from keygen); repeat for each.",
)
@click.option(
    "--threshold",
    required=True,
    type=click.IntRange(min=1),
    help="Signatures by distinct admins needed for every version.",
)
@click.option(
    "--node",
    "node_files",
    multiple=True,
    type=INPUT,
    help="A node's entry (output of 'gateway keys entry'); repeat for each.",
)
@click.option(
    "--expires-days",
    type=click.IntRange(1, 3650),
    default=365,
    show_default=True,
    help="The list expires this many days from now (nodes then stop sending).",
)
@click.option("--out", required=True, type=OUTPUT, help="Proposal file to write.")
def bootstrap_command(
    federation: str,
    admin_files: tuple[str, ...],
    threshold: int,
    node_files: tuple[str, ...],
    expires_days: int,
    out: str,
) -> None:
    """Propose trust list version 1 of a new federation (unsigned)."""
    _refuse_existing(out)
    now = int(time.time())
    wire = bootstrap(
        federation,
        [_read_json(path, "admin public file") for path in admin_files],
        threshold,
        [_read_json(path, "node entry") for path in node_files],
        issued_at=now,
        expires=now + expires_days * DAY,
    )
    _write(out, wire)
    click.echo(f"Wrote {out}.")
    _show(Proposal.from_wire(wire), None, out)
    click.echo(f"Next: each administrator runs 'gateway admin sign --key KEY {out}'.")


@admin.command("propose")
@click.option(
    "--current", required=True, type=INPUT, help="The trust list version the nodes hold now."
)
@click.option(
    "--add-node",
    multiple=True,
    type=INPUT,
    help="Add a state's node from its entry ('gateway keys entry' output).",
)
@click.option("--remove-node", multiple=True, metavar="NODE", help="Remove a node, e.g. TJ.")
@click.option(
    "--add-key",
    multiple=True,
    type=(str, INPUT),
    metavar="NODE ENTRY",
    help="Add the new keys in ENTRY (a node entry or one key object) to NODE.",
)
@click.option(
    "--retire-key",
    multiple=True,
    metavar="KID",
    help="Retire a key: usable only for messages dated up to --not-after.",
)
@click.option(
    "--not-after",
    type=TIME,
    default=None,
    help="End of the retired keys' use (Unix seconds or ISO 8601); default now + overlap.",
)
@click.option(
    "--overlap-days",
    type=click.IntRange(0, 365),
    default=DEFAULT_OVERLAP // DAY,
    show_default=True,
    help="Days a retired key stays usable when --not-after is not given.",
)
@click.option(
    "--revoke-key",
    multiple=True,
    metavar="KID",
    help="Revoke a compromised key: refused for everything from --revoked-at on.",
)
@click.option(
    "--revoked-at",
    type=TIME,
    default=None,
    help="When the revoked keys stop counting (Unix seconds or ISO 8601); default now.",
)
@click.option("--remove-key", multiple=True, metavar="KID", help="Drop a retired or revoked key.")
@click.option(
    "--endpoint",
    multiple=True,
    type=(str, str),
    metavar="NODE URL",
    help="Change a node's endpoint URL.",
)
@click.option(
    "--name", multiple=True, type=(str, str), metavar="NODE NAME", help="Change a node's name."
)
@click.option("--add-admin", multiple=True, type=INPUT, help="Add an administrator (KEY.pub.json).")
@click.option("--remove-admin", multiple=True, metavar="KID", help="Remove an administrator.")
@click.option("--threshold", type=click.IntRange(min=1), default=None, help="New threshold.")
@click.option(
    "--expires-days",
    type=click.IntRange(1, 3650),
    default=None,
    help="New expiry, this many days from now (default: keep the current expiry).",
)
@click.option("--out", required=True, type=OUTPUT, help="Proposal file to write.")
def propose_command(
    current: str,
    add_node: tuple[str, ...],
    remove_node: tuple[str, ...],
    add_key: tuple[tuple[str, str], ...],
    retire_key: tuple[str, ...],
    not_after: int | None,
    overlap_days: int,
    revoke_key: tuple[str, ...],
    revoked_at: int | None,
    remove_key: tuple[str, ...],
    endpoint: tuple[tuple[str, str], ...],
    name: tuple[tuple[str, str], ...],
    add_admin: tuple[str, ...],
    remove_admin: tuple[str, ...],
    threshold: int | None,
    expires_days: int | None,
    out: str,
) -> None:
    """Propose the next version of the trust list (unsigned).

    Changes apply in this order: admins added and removed, nodes added, keys added,
    retired, revoked and removed, endpoints and names changed, nodes removed, threshold.
    """
    _refuse_existing(out)
    trust_list = _read_current(current)
    assert trust_list is not None
    changes: list[Change] = [AddAdmin(_read_json(p, "admin public file")) for p in add_admin]
    changes += [RemoveAdmin(kid) for kid in remove_admin]
    changes += [AddNode(_read_json(p, "node entry")) for p in add_node]
    for node, path in add_key:
        changes += _added_keys(trust_list, node, path)
    changes += [
        RetireKey(kid, not_after=not_after, overlap=overlap_days * DAY) for kid in retire_key
    ]
    changes += [RevokeKey(kid, revoked_at=revoked_at) for kid in revoke_key]
    changes += [RemoveKey(kid) for kid in remove_key]
    changes += [SetEndpoint(node, url) for node, url in endpoint]
    changes += [SetName(node, text) for node, text in name]
    changes += [RemoveNode(node) for node in remove_node]
    if threshold is not None:
        changes.append(SetThreshold(threshold))
    now = int(time.time())
    wire = propose(
        trust_list,
        changes=changes,
        issued_at=now,
        expires=None if expires_days is None else now + expires_days * DAY,
    )
    _write(out, wire)
    click.echo(f"Wrote {out}.")
    _show(Proposal.from_wire(wire), trust_list, out)
    click.echo(
        f"Next: each administrator runs 'gateway admin sign --key KEY --current {current} {out}'."
    )


def _added_keys(current: TrustList, node: str, path: str) -> list[Change]:
    """The keys of ENTRY that NODE does not list yet: ENTRY is a node entry (as printed by
    'gateway keys entry' after a rotation) or a single §5 key object. A key of the entry
    that is not active and not listed (rotated out again before any version listed it)
    is left out: no node ever trusted it, and only active keys are added."""
    document = _read_json(path, "key or node entry")
    if not (isinstance(document, dict) and "keys" in document):
        return [AddKey(node, document)]
    if document.get("node") != node:
        raise ProposalError(
            "proposal-bad-entry", f"{path} is the entry of {document.get('node')!r}, not {node}"
        )
    keys = document["keys"]
    if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
        raise ProposalError(
            "proposal-bad-entry", f"{path}: keys must be a non-empty list of key objects (§5)"
        )
    listed = {k.kid for k in current.keys.keys_of(node)}
    new = [k for k in keys if not (isinstance(k.get("kid"), str) and k["kid"] in listed)]
    if not new:
        raise ProposalError(
            "proposal-duplicate-key", f"every key in {path} is already listed for {node}"
        )
    active = [k for k in new if k.get("status") == "active"]
    return [AddKey(node, k) for k in (active or new)]


@admin.command("diff")
@click.option("--current", type=INPUT, default=None, help="The version it replaces (not for v1).")
@click.argument("proposal", type=INPUT)
def diff_command(current: str | None, proposal: str) -> None:
    """Show every change a proposal makes, with fingerprints to compare by phone."""
    _show(_read_proposal(proposal), _read_current(current), proposal)


@admin.command("sign")
@click.option("--key", "key_file", required=True, type=INPUT, help="Your sealed admin key file.")
@click.option(
    "--current", type=INPUT, default=None, help="The version it replaces (needed after v1)."
)
@click.option("--yes", is_flag=True, help="Sign without asking for confirmation.")
@click.option("--out", type=OUTPUT, default=None, help="Write here instead of in place.")
@click.argument("proposal", type=INPUT)
def sign_command(
    key_file: str, current: str | None, yes: bool, out: str | None, proposal: str
) -> None:
    """Review a proposal and add your signature to it.

    Shows every change and the SHA-256 first: compare the hash by phone with whoever
    proposed it before confirming.
    """
    if out is not None and os.path.exists(out) and not os.path.samefile(out, proposal):
        _refuse_existing(out)  # only the proposal itself is signed in place
    parsed = _read_proposal(proposal)
    trust_list = _read_current(current)
    if trust_list is None and parsed.version > 1:
        _fail(
            "proposal-needs-current",
            f"version {parsed.version} changes version {parsed.version - 1}: give that list "
            "with --current so you see what you sign",
        )
    _show(parsed, trust_list, out or proposal)
    key = _load_admin_key(key_file)
    click.echo(f"Signing as {shown(key.label)} ({key.kid}).")
    signed = sign(parsed.to_wire(), key, trust_list)  # refuses a key that is not an admin
    if not yes and not _confirmed(f"Sign {shown(parsed.federation)} version {parsed.version}?"):
        _fail("not-confirmed", "you did not confirm, so nothing was signed or written")
    _write(out or proposal, signed)
    click.echo(f"Signed; wrote {out or proposal}.")
    _print_status(signed, trust_list)


@admin.command("merge")
@click.option("--current", type=INPUT, default=None, help="The version it replaces, for status.")
@click.argument("out", type=OUTPUT)
@click.argument("inputs", nargs=-1, required=True, type=INPUT)
def merge_command(current: str | None, out: str, inputs: tuple[str, ...]) -> None:
    """Collect into OUT the signatures of copies signed on separate machines.

    Every copy must hold the identical list; OUT's own signatures are kept if it exists.
    """
    names = list(inputs)
    if os.path.exists(out) and not any(os.path.samefile(out, path) for path in inputs):
        names.insert(0, out)
    merged = merge(*(Path(name).read_bytes() for name in names), names=names)
    trust_list = _read_current(current)
    judged = status(merged, trust_list)  # a proposal that does not follow it: nothing written
    _write(out, merged)
    count = len(Proposal.from_wire(merged).signatures)
    click.echo(f"Merged {len(names)} files into {out}: {count} signatures.")
    for line in judged.lines():
        click.echo(line)


@admin.command("status")
@click.option("--current", type=INPUT, default=None, help="The version it replaces (after v1).")
@click.argument("proposal", type=INPUT)
def status_command(current: str | None, proposal: str) -> None:
    """Count valid signatures against both thresholds, say who is missing, and whether
    nodes would install it now."""
    _print_status(Path(proposal).read_bytes(), _read_current(current))


@admin.command("anchor")
@click.argument("trust_list", type=INPUT)
def anchor_command(trust_list: str) -> None:
    """Print the SHA-256 of a trust list's L: the anchor nodes pin for version 1, and what
    administrators compare by phone for any version."""
    parsed = _read_proposal(trust_list)
    click.echo(f"{shown(parsed.federation)} version {parsed.version}")
    click.echo(f"SHA-256: {parsed.sha256.hex()}")
    click.echo("Read aloud:")
    for line in read_aloud(parsed.sha256):
        click.echo(f"  {line}")
    if parsed.version == 1:
        click.echo(
            f"Nodes pin it with: gateway trust install {trust_list} --anchor {parsed.sha256.hex()}"
        )
