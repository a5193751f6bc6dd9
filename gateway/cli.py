"""The ``gateway`` command: everything an operator does with a node.

Commands are thin: they parse options, call a service, and print. Every
command works on one node's instance folder (``--instance`` or
``GATEWAY_INSTANCE``, default ``./instance``). Every refusal, whatever raised it,
ends as one line ``error [code]: sentence`` on stderr and exit status 2; a
traceback means a bug.
"""

from __future__ import annotations

import errno
import getpass
import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from click.core import ParameterSource
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.exc import DatabaseError, OperationalError

from gateway import logs
from gateway.cli_admin import INPUT, reader_gone
from gateway.config import (
    INSTANCE_FILE,
    NODE_RE,
    Settings,
    check_database_url,
    is_bind,
    is_utf8,
    load_settings,
    write_instance_file,
)
from gateway.db import missing_table, unavailable
from gateway.errors import ConfigError, GatewayError
from gateway.models import DeliveryState
from keys.fingerprint import fingerprint
from keys.nodekeys import PASSPHRASE_ENV, NodeKeys, passphrase_from_env
from keys.proposal import ProposalError, entry_endpoint, entry_text
from keys.sealed import (
    MEMLIMIT_MODERATE,
    OPSLIMIT_MODERATE,
    KeyFileError,
    key_file_warnings,
)
from keys.trustlist import MAX_TEXT, MAX_TIME, KeyUse, TrustError, key_entry

if TYPE_CHECKING:
    from gateway.node import Node

# Row ids are 32-bit integers in PostgreSQL: larger ids cannot exist.
ROW_ID = click.IntRange(1, 2**31 - 1)
LIMIT = click.IntRange(1, 1000)


class Context:
    def __init__(self, instance: str) -> None:
        self.instance = Path(instance)
        self._node: Any = None
        self.passphrase: str | None = None  # as typed at a prompt, for `serve`

    def settings(self) -> Settings:
        """The node's settings; a missing instance folder is named as such."""
        if self.instance.exists() and not self.instance.is_dir():
            _fail(
                "no-instance",
                f"instance folder '{self.instance}' is a file, not a folder; pass --instance "
                "(or set GATEWAY_INSTANCE) to the node's folder",
            )
        if not self.instance.is_dir():
            _fail(
                "no-instance",
                f"instance folder '{self.instance}' does not exist; pass --instance (or set "
                "GATEWAY_INSTANCE) to the node's folder, or create a node there with "
                f"'gateway --instance {self.instance} init --node XX'",
            )
        if not (self.instance / INSTANCE_FILE).exists() and not os.environ.get("GATEWAY_NODE"):
            _fail(
                "no-instance",
                f"instance folder '{self.instance}' holds no node ({INSTANCE_FILE} is missing); "
                "pass --instance to the node's folder, or create a node there with "
                f"'gateway --instance {self.instance} init --node XX'",
            )
        return load_settings(self.instance)

    def close(self) -> None:
        if self._node is not None:
            self._node.engine.dispose()

    def node(self, keys: NodeKeys | None = None) -> Any:
        """Open the node (keys, database, trust list) once per command."""
        if self._node is None:
            from gateway.node import Node

            settings = self.settings()
            self._node = Node(settings, keys=keys or (lambda: self._load_keys(settings)))
        return self._node

    def _load_keys(self, settings: Settings) -> NodeKeys:
        # A passphrase typed once is used again when a long-running command (dispatch)
        # reloads a changed key file: it never prompts in the middle of its work.
        keys, self.passphrase = _load_keys(settings, typed=self.passphrase)
        return keys


def _load_keys(settings: Settings, typed: str | None = None) -> tuple[NodeKeys, str | None]:
    passphrase = settings.key_passphrase if settings.key_passphrase is not None else typed
    # An unsealed or weakly sealed key file is allowed (demos, tests) but said once, as a
    # line, not a traceback.
    with key_file_warnings(settings.key_file, lambda line: click.echo(line, err=True)):
        try:
            keys = NodeKeys.load(settings.key_file, passphrase)
        except KeyFileError as e:
            if e.code != "key-file-passphrase" or passphrase is not None or not sys.stdin.isatty():
                if e.code == "key-file-passphrase" and passphrase is None:
                    raise KeyFileError(
                        e.code,
                        f"{settings.key_file} is sealed: set GATEWAY_KEY_PASSPHRASE or run "
                        "the command in a terminal to type the passphrase",
                    ) from e
                raise
            passphrase = click.prompt("Key passphrase", hide_input=True)
            keys = NodeKeys.load(settings.key_file, passphrase)
    return keys, passphrase


def _keyrings_by_use(ring: NodeKeys) -> tuple[tuple[KeyUse, tuple[Any, ...]], ...]:
    """The node's signing and encryption keyrings, each with its trust-list use."""
    return (("sig", ring.signing), ("enc", ring.encryption))


def _utc(when: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when or 0))


def _fail(code: str, message: str) -> NoReturn:
    click.echo(f"error [{code}]: {message}", err=True)
    sys.exit(2)


# click 8.2 and later raise this for a group given no command (8.1 exits instead).
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _usage(error: click.UsageError) -> NoReturn:
    """A command line click could not parse: the same one-line form as every error
    (a group given no command shows its help, as click does)."""
    if isinstance(error, _NO_ARGS_IS_HELP):
        raise error
    where = f"; see '{error.ctx.command_path} --help'" if error.ctx is not None else ""
    _fail("usage", f"{error.format_message().rstrip('.')}{where}")


class GatewayGroup(click.Group):
    """Turns every project error into one line: ``error [code]: sentence``."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        for arg in args:
            if not is_utf8(arg):  # bytes the shell passed that are not UTF-8
                _fail(
                    "bad-argument",
                    f"argument {arg.encode('utf-8', 'replace').decode()!r} is not valid UTF-8 "
                    "text; type it again in a UTF-8 terminal",
                )
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as e:
            _usage(e)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as e:  # a subcommand's arguments
            _usage(e)
        except (GatewayError, TrustError, KeyFileError) as e:
            _fail(getattr(e, "code", "error"), getattr(e, "message", None) or str(e))
        except OperationalError as e:
            if missing_table(e):
                _fail(
                    "database-damaged",
                    f"the database lacks a table of the node: {' '.join(str(e.orig).split())[:300]}"
                    "; restore it from a backup (a table dropped by hand is not made again)",
                )
            _fail("database-unavailable", unavailable(e))
        except DatabaseError as e:
            reason = " ".join(str(e.orig).split())[:300]
            if type(e) is DatabaseError or missing_table(e):  # not a database, or damaged
                _fail(
                    "database-damaged",
                    f"cannot read the database: {reason}; check database_url, or restore "
                    "the database from a backup",
                )
            # A conflict with another process's change, or a statement the database refused.
            _fail(
                "database-error",
                f"the database refused the change: {reason}; try the command again, and "
                "report it with this line if it repeats",
            )
        except FileNotFoundError as e:
            _fail("file-not-found", _no_such_file(ctx, e))
        except BrokenPipeError:
            reader_gone()
        except OSError as e:
            _fail("file-error", f"{e.filename or 'a file'}: {e.strerror}")


def _no_such_file(ctx: click.Context, error: FileNotFoundError) -> str:
    """The sentence for a file that is not there: its folder, when that is what is
    missing; the hint to run init only for a file of a node's folder that has no
    configuration yet, and not to init itself."""
    name = os.fsdecode(error.filename) if error.filename is not None else None
    if name is None:
        return "a file the command needs does not exist; check the paths given"
    if not Path(name).parent.is_dir():
        return f"{name}: the folder {Path(name).parent} does not exist"
    hint = "; check the path given, or restore the file from a backup"
    instance = Path(os.path.abspath(ctx.obj.instance)) if ctx.obj else None
    if instance is not None and Path(os.path.abspath(name)).is_relative_to(instance):
        if ctx.invoked_subcommand != "init" and not (instance / "gateway.toml").exists():
            hint = "; did you run 'gateway init'?"
        elif Path(name).name == "node-keys.json":
            hint = (
                "; the node has a configuration but no keys: restore the key file from a "
                "backup, or make new keys with 'gateway keys create' (peers then need the "
                "new keys in the trust list)"
            )
    return f"{name}: no such file{hint}"


def _instance(ctx: click.Context, param: click.Parameter, value: str) -> str:
    # click takes an empty GATEWAY_INSTANCE for an unset one (and the default folder).
    unset = ctx.get_parameter_source(param.name or "") is ParameterSource.DEFAULT
    if not value.strip() or (unset and os.environ.get("GATEWAY_INSTANCE") is not None):
        raise click.BadParameter(
            "an empty name would be the current folder; give the node's folder, e.g. "
            "/srv/xb1/kz (--instance, or GATEWAY_INSTANCE)"
        )
    return value


@click.group(cls=GatewayGroup)
@click.option(
    "--instance",
    envvar="GATEWAY_INSTANCE",
    default="instance",
    show_default=True,
    callback=_instance,
    help="The node's instance folder (configuration, keys, SQLite database); "
    "or set GATEWAY_INSTANCE.",
)
@click.pass_context
def main(ctx: click.Context, instance: str) -> None:
    """Operate one node of the xb1 secure cross-border exchange gateway.

    Settings come from INSTANCE/gateway.toml and GATEWAY_* environment variables; the
    passphrase of the sealed key file from GATEWAY_KEY_PASSPHRASE (or a prompt).
    """
    ctx.obj = Context(instance)
    ctx.call_on_close(ctx.obj.close)
    # The node's log lines: routine ones (info) only from the long-running dispatcher.
    logs.configure("info" if ctx.invoked_subcommand == "dispatch" else "warning")


def _out(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


# ---------------------------------------------------------------------------- init / keys


@main.command()
@click.option("--node", "node_id", required=True, help="Node id, e.g. KZ or KZ-MVD.")
@click.option("--database-url", default="", help="SQLAlchemy URL; default SQLite in the folder.")
@click.option("--trust-anchor", default="", help="SHA-256 (hex) of trust list version 1.")
@click.option(
    "--unsealed",
    is_flag=True,
    help="UNSAFE: store private keys unencrypted (demos and tests only).",
)
@click.pass_obj
def init(obj: Context, node_id: str, database_url: str, trust_anchor: str, unsealed: bool) -> None:
    """Create a node: instance folder, configuration, sealed node keys, database.

    The passphrase that seals the keys comes from GATEWAY_KEY_PASSPHRASE, or is asked
    for twice.
    """
    folder = obj.instance
    key_file = folder / "node-keys.json"
    for existing in (key_file, folder / "gateway.toml"):
        if existing.exists() or existing.is_symlink():
            _fail(
                "already-initialised",
                f"{existing} exists; this folder already holds a node (use another --instance)",
            )
    # Check every option before anything is written, so a typo leaves no half-made node.
    if not NODE_RE.match(node_id):
        _fail(
            "config-node",
            f"--node {node_id!r} is not a node id: use the ISO 3166 alpha-2 code in capitals, "
            "optionally with a suffix, e.g. KZ or KZ-MVD",
        )
    if database_url:
        check_database_url(database_url)
    try:
        Settings(node=node_id, instance=str(folder), trust_anchor=trust_anchor.lower()).check()
    except ConfigError as e:
        _fail(e.code, e.message.replace("trust_anchor", "--trust-anchor", 1))
    passphrase = _new_ring_passphrase(unsealed, None)  # asked before anything is written
    settings: dict[str, Any] = {"node": node_id}
    if database_url:
        settings["database_url"] = database_url
    if trust_anchor:
        settings["trust_anchor"] = trust_anchor.lower()
    # The folder holds the database (message contents) and the key file: owner only.
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    made = [folder / INSTANCE_FILE]
    try:
        write_instance_file(folder, settings)
        loaded = obj.settings()  # with the GATEWAY_* environment, as the node will run
        problem = _init_problem(loaded, node_id, database_url)
        if problem is not None:
            _fail(*problem)
        made += _sqlite_files(loaded.database_url)
        keys = NodeKeys.generate(node_id)
        obj.node(keys)  # creates the database; a database error leaves no key file behind
        _save_new_ring(keys, Path(loaded.key_file), passphrase)
    except BaseException:
        # Whatever stopped it (an error line, a database down, Ctrl-C), a second try
        # must find no half-made node: what this command created goes again.
        if obj._node is not None:
            obj._node.engine.dispose()
        for path in made:
            path.unlink(missing_ok=True)
        raise
    click.echo(f"Node {node_id} created in {folder}")
    _print_keys(keys)


def _sqlite_files(url: str) -> list[Path]:
    """The files of a SQLite database at ``url`` that do not exist yet."""
    if not url.startswith("sqlite:///"):
        return []
    base = Path(url.removeprefix("sqlite:///"))
    if base.exists():
        return []
    return [base, Path(f"{base}-wal"), Path(f"{base}-shm"), Path(f"{base}-journal")]


def _init_problem(loaded: Settings, node_id: str, database_url: str) -> tuple[str, str] | None:
    """Why the configuration just written would not make a new node of its own."""
    if loaded.node != node_id:
        return (
            "config-node",
            f"GATEWAY_NODE={loaded.node} in the environment overrides --node {node_id}; "
            "unset it and run init again",
        )
    if database_url and loaded.database_url != database_url:
        return (
            "config-database",
            "GATEWAY_DATABASE_URL in the environment overrides --database-url; unset it or "
            "leave the option out",
        )
    if Path(loaded.key_file).exists():
        return (
            "already-initialised",
            f"{loaded.key_file} exists; it holds another node's keys (use another key_file)",
        )
    if _holds_a_node(loaded.database_url):
        return (
            "database-in-use",
            "the database already holds a node's tables; give each node its own database",
        )
    return None


def _holds_a_node(url: str) -> bool:
    """Whether the database at ``url`` already has this project's tables."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return False  # not created by merely looking
    engine = create_engine(url)
    try:
        return inspect(engine).has_table("alembic_version")
    finally:
        engine.dispose()


def _new_ring_passphrase(unsealed: bool, configured: str | None) -> str | None:
    """The passphrase to seal new node keys under (None: unsealed, said loudly)."""
    if unsealed:
        click.echo(
            "WARNING: private keys are stored UNSEALED; anyone who reads the key file "
            "can sign and decrypt as this node.",
            err=True,
        )
        return None
    return passphrase_from_env() or configured or _ask_new_passphrase(PASSPHRASE_ENV)


def _ask_new_passphrase(variable: str) -> str:
    if not sys.stdin.isatty():
        _fail(
            "key-file-passphrase",
            f"no passphrase to seal the node keys: set {variable}, or run the command in a "
            "terminal to type one",
        )
    text: str = click.prompt(
        "Passphrase to seal the node keys", hide_input=True, confirmation_prompt=True
    )
    return text


def _save_new_ring(keys: NodeKeys, key_file: Path, passphrase: str | None) -> None:
    if passphrase is None:
        keys.save(key_file, None, unsafe_unsealed=True)
    else:
        keys.save(key_file, passphrase)


def _print_keys(keys: NodeKeys) -> None:
    for label, ring in (("sig", keys.signing), ("enc", keys.encryption)):
        for entry in ring:
            click.echo(f"  {label} {entry.kid} [{entry.status}]")
            click.echo(f"      fingerprint {fingerprint(entry.pair.public)}")


@main.group()
def keys() -> None:
    """Create, show, rotate and prune the node's keys; print its trust-list entry."""


@keys.command("create")
@click.option(
    "--unsealed",
    is_flag=True,
    help="UNSAFE: store private keys unencrypted (demos and tests only).",
)
@click.pass_obj
def keys_create(obj: Context, unsealed: bool) -> None:
    """Create the node's key file in an instance folder that has a configuration but no
    keys yet (``gateway init`` does this as part of creating a node). Refuses to
    replace existing keys: use ``keys rotate``."""
    settings = obj.settings()
    key_file = Path(settings.key_file)
    if key_file.exists():
        _fail(
            "keys-exist",
            f"{key_file} exists; rotate keys with 'gateway keys rotate' instead of replacing them",
        )
    ring = NodeKeys.generate(settings.node)
    _save_new_ring(ring, key_file, _new_ring_passphrase(unsealed, settings.key_passphrase))
    click.echo(f"Keys of {settings.node} created in {key_file}")
    _print_keys(ring)


@keys.command("show")
@click.pass_obj
def keys_show(obj: Context) -> None:
    """Key ids and fingerprints (compare them with the trust list by phone)."""
    node = obj.node()
    ring = node.keys  # unseal first: print nothing if that fails
    click.echo(f"Node {node.id}")
    _print_keys(ring)


@keys.command("check")
@click.pass_obj
def keys_check(obj: Context) -> None:
    """Compare the key file with the current trust list: exit 1, naming each problem,
    if peers would encrypt to a key the file lacks or refuse what this node signs."""
    node = obj.node()
    ring = node.keys
    trust_list = node.trust()
    from gateway.node import listing_problems

    problems = listing_problems(node.id, ring, trust_list)
    for problem in problems:
        click.echo(f"PROBLEM: {problem}", err=True)
    if problems:
        sys.exit(1)
    now = int(time.time())
    click.echo(
        f"Key file and trust list version {trust_list.version} agree: this node signs with "
        f"{node.signing_pair(now, usable=False).kid}, peers encrypt to "
        f"{trust_list.keys.encryption_key(node.id, now).kid}."
    )


def _endpoint(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """A node's endpoint as the trust list's tools take it in a node entry."""
    try:
        return entry_endpoint(value, "endpoint")
    except ProposalError:
        raise click.BadParameter(
            f"{value!r} is not an http(s) URL of at most {MAX_TEXT} characters; peers need "
            "one like https://xb1.kz.example"
        ) from None


def _name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """A node's name by the rule the trust list's tools apply to a node entry (checked
    before any key is made or written)."""
    try:
        return entry_text(value, "the name")
    except ProposalError as e:
        raise click.BadParameter(e.message) from None


def _future(_ctx: click.Context, _param: click.Parameter, value: int | None) -> int | None:
    if value is not None and value <= int(time.time()):
        raise click.BadParameter(f"{value} is not in the future (Unix seconds, e.g. 1893456000)")
    return value


def _anchor(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value.strip()):
        raise click.BadParameter(
            "the anchor is the 64-hex-digit SHA-256 of trust list version 1, as published "
            "by the federation's administrators"
        )
    return value.strip().lower() if value is not None else None


@keys.command("entry")
@click.option(
    "--name",
    required=True,
    callback=_name,
    help="Human name of the node, e.g. 'Kazakhstan MVD'.",
)
@click.option(
    "--endpoint",
    required=True,
    callback=_endpoint,
    help="Base URL peers use, e.g. https://xb.kz.example",
)
@click.option(
    "--not-after",
    type=click.IntRange(min=1, max=MAX_TIME),
    default=None,
    callback=_future,
    help="Key expiry (Unix seconds, in the future); default two years from now.",
)
@click.pass_obj
def keys_entry(obj: Context, name: str, endpoint: str, not_after: int | None) -> None:
    """Print this node's trust-list entry (public keys only) as JSON."""
    node = obj.node()
    now = int(time.time())
    horizon = not_after or now + 2 * 365 * 24 * 3600
    _out(
        {
            "node": node.id,
            "name": name,
            "endpoint": endpoint,
            "keys": [
                key_entry(
                    node.keys.current_signing.public, "sig", not_before=now, not_after=horizon
                ),
                key_entry(
                    node.keys.current_encryption.public, "enc", not_before=now, not_after=horizon
                ),
            ],
        }
    )


def _save_ring(obj: Context, node: Any, ring: NodeKeys) -> None:
    """Write the key ring back, sealed under the passphrase it was opened with."""
    passphrase = obj.passphrase or node.settings.key_passphrase
    if passphrase is None:
        click.echo(f"WARNING: {node.settings.key_file} stays UNSEALED.", err=True)
        ring.save(node.settings.key_file, None, unsafe_unsealed=True)
    else:
        ring.save(node.settings.key_file, passphrase)
    node.keys = ring


NEW_PASSPHRASE_ENV = "GATEWAY_NEW_KEY_PASSPHRASE"  # noqa: S105 - a variable name


@keys.command("reseal")
@click.pass_obj
def keys_reseal(obj: Context) -> None:
    """Seal the key file again, under a new passphrase and the default key-derivation
    settings (argon2id, 3 passes, 256 MiB): to change the passphrase, or to
    strengthen a file that warns of weak settings. The new passphrase comes from
    GATEWAY_NEW_KEY_PASSPHRASE or is asked for twice. Running servers and
    dispatchers keep their keys; give them the new passphrase when they restart."""
    node = obj.node()
    ring = node.keys  # opened with the current passphrase first
    passphrase = passphrase_from_env(NEW_PASSPHRASE_ENV) or _ask_new_passphrase(NEW_PASSPHRASE_ENV)
    ring.save(node.settings.key_file, passphrase)
    click.echo(
        f"Keys of {node.id} sealed again in {node.settings.key_file} (argon2id, "
        f"{OPSLIMIT_MODERATE} passes, {MEMLIMIT_MODERATE // 2**20} MiB); use the new "
        "passphrase from now on"
    )


@keys.command("rotate")
@click.option("--sig", "rotate_sig", is_flag=True, help="Make a new signing key.")
@click.option("--enc", "rotate_enc", is_flag=True, help="Make a new encryption key.")
@click.option(
    "--overlap-days",
    type=click.IntRange(1, 365),
    default=30,
    show_default=True,
    help="How long the retired keys stay valid in the entry printed for admins: the "
    "window this node asks for; the administrators set it in the list ('gateway admin "
    "propose --retire-key KID --overlap-days N', 14 days unless they say).",
)
@click.option(
    "--name",
    required=True,
    callback=_name,
    help="Human name of the node, as in the trust list.",
)
@click.option("--endpoint", required=True, callback=_endpoint, help="The node's base URL.")
@click.pass_obj
def keys_rotate(
    obj: Context, rotate_sig: bool, rotate_enc: bool, overlap_days: int, name: str, endpoint: str
) -> None:
    """Add new node keys and print the trust-list entry for the administrators.

    The old keys are kept (retired). The node signs with the new key only once the
    installed trust list lists it, and keeps opening messages sealed to the old
    encryption key until `gateway keys prune` removes it."""
    if not (rotate_sig or rotate_enc):
        _fail("nothing-to-rotate", "say which key to rotate: --sig, --enc or both")
    node = obj.node()
    now = int(time.time())
    ring = node.keys
    if rotate_sig:
        ring = ring.rotate_signing(now=now)
    if rotate_enc:
        ring = ring.rotate_encryption(now=now)
    _save_ring(obj, node, ring)
    horizon = now + 2 * 365 * 24 * 3600
    retired_until = now + overlap_days * 24 * 3600
    entries = []
    for use, keyring in _keyrings_by_use(ring):
        for entry in keyring:
            if entry.status == "active":
                entries.append(key_entry(entry.pair.public, use, not_before=now, not_after=horizon))
            else:
                entries.append(
                    key_entry(
                        entry.pair.public,
                        use,
                        not_before=entry.created,
                        not_after=retired_until,
                        status="retired",
                    )
                )
    click.echo("New keys (compare these fingerprints with the administrators by phone):", err=True)
    for use, keyring in _keyrings_by_use(ring):
        for entry in keyring:
            if entry.status == "active":
                click.echo(f"  {use} {entry.kid} {fingerprint(entry.pair.public)}", err=True)
    _out({"node": node.id, "name": name, "endpoint": endpoint, "keys": entries})


@keys.command("prune")
@click.pass_obj
def keys_prune(obj: Context) -> None:
    """Destroy retired private keys that nothing in flight can need any more.

    A retired key is pruned when the installed trust list no longer lists it, lists
    it as revoked, or lists it as retired with not_after more than max_ttl ago (no
    valid envelope can still be sealed or signed with it)."""
    node = obj.node()
    now = int(time.time())
    ring = node.keys
    listed = {key.kid: key for key in node.trust().keys.keys_of(node.id)}

    def needed(entry: Any) -> bool:
        if entry.status == "active":
            return True
        key = listed.get(entry.kid)
        if key is None or key.status == "revoked":
            return False
        return key.status == "active" or key.not_after + node.settings.max_ttl >= now

    keep_sig = tuple(e for e in ring.signing if needed(e))
    keep_enc = tuple(e for e in ring.encryption if needed(e))
    kept = {e.kid for e in keep_sig + keep_enc}
    dropped = [e.kid for e in ring.signing + ring.encryption if e.kid not in kept]
    if not dropped:
        click.echo("Nothing to prune.")
        return
    _save_ring(obj, node, NodeKeys(ring.node, keep_sig, keep_enc))
    for kid in dropped:
        click.echo(f"Destroyed retired key {kid}.")


# ---------------------------------------------------------------------------- trust list


@main.group()
def trust() -> None:
    """Install, follow (fetch) and inspect the federation trust list."""


@trust.command("install")
@click.argument("path", type=INPUT)
@click.option(
    "--anchor",
    default=None,
    callback=_anchor,
    help="SHA-256 (hex) pinning version 1, if not configured.",
)
@click.pass_obj
def trust_install(obj: Context, path: str, anchor: str | None) -> None:
    """Verify a trust list version and make it current.

    The first version is checked against --anchor (or trust_anchor in gateway.toml);
    an anchor given here is then written into gateway.toml, so every later start
    re-verifies the stored list against it."""
    node = obj.node()
    configured = node.settings.trust_anchor
    trust_list = node.install_trust_list(Path(path).read_bytes(), anchor=anchor)
    _warn_listing(node, trust_list)
    if node.settings.trust_anchor != configured:
        click.echo(f"Pinned trust anchor {anchor} in {obj.instance / INSTANCE_FILE}.")
    click.echo(
        f"Installed trust list {trust_list.federation} version {trust_list.version} "
        f"({len(trust_list.node_ids)} nodes, threshold {trust_list.threshold})."
    )


def _warn_listing(node: Any, trust_list: Any) -> None:
    """Warn of what keeps the node from exchanging under the list just installed,
    comparing the key file when it opens without a prompt (installing needs no key)."""
    from gateway.node import listing_problems

    settings = node.settings
    ring: NodeKeys | None = node.keys_if_loaded()
    if ring is None:
        try:
            with key_file_warnings(settings.key_file, lambda _line: None):
                ring = NodeKeys.load(settings.key_file, settings.key_passphrase)
        except (KeyFileError, OSError) as e:
            if node.id in trust_list.node_ids:
                reason = e.message if isinstance(e, KeyFileError) else f"{e.strerror}: {e.filename}"
                click.echo(
                    f"Note: the key file was not compared with the list ({reason}); run "
                    "'gateway keys check'.",
                    err=True,
                )
    for problem in listing_problems(node.id, ring, trust_list):
        click.echo(f"WARNING: {problem}", err=True)


@trust.command("fetch")
@click.option("--from", "peer", default=None, help="Fetch from this member (e.g. KG) now.")
@click.pass_obj
def trust_fetch(obj: Context, peer: str | None) -> None:
    """Follow newer trust list versions: those peers announced (the dispatcher does
    this on its own), or whatever --from NODE serves. Every version is verified
    from the current one before it is used."""
    from gateway.trust_sync import TrustFollower

    if peer is not None and not peer:
        _fail("unknown-node", "--from needs a member's node id, e.g. --from KG")
    node = obj.node()
    follower = TrustFollower(node)
    installed = follower.follow(peer) if peer else follower.run_once()
    if installed is None:
        click.echo(f"Nothing newer installed; current version {node.trust().version}.")
        with node.sessions() as session:
            from gateway.models import TrustHint

            for hint in session.scalars(select(TrustHint)):
                click.echo(
                    f"  {hint.peer} announced version {hint.version}: "
                    f"{hint.last_error or 'not tried yet'}"
                )
        return
    _warn_listing(node, installed)
    click.echo(f"Installed trust list {installed.federation} version {installed.version}.")


@trust.command("show")
@click.pass_obj
def trust_show(obj: Context) -> None:
    """The current trust list: version, expiry, nodes, endpoints and key fingerprints."""
    trust_list = obj.node().trust()
    click.echo(
        f"{trust_list.federation} version {trust_list.version}, expires "
        f"{_utc(trust_list.expires)}"
        f"{' (EXPIRED: sending frozen)' if trust_list.is_expired(int(time.time())) else ''}"
    )
    for node_id in trust_list.node_ids:
        entry = trust_list.node(node_id)
        click.echo(f"  {node_id} {entry.name} {entry.endpoint}")
        for key in entry.keys:
            click.echo(f"      {key.use} {key.kid} {key.status} {fingerprint(key.pub)}")


# ---------------------------------------------------------------------------- sovereignty


@main.command()
@click.argument("scope", type=click.Choice(["node", "type"]))
@click.argument("value")
@click.option("--reason", required=True, help="Why (kept with the decision).")
@click.option("--by", "who", required=True, help="Who decides (name or role).")
@click.pass_obj
def suspend(obj: Context, scope: str, value: str, reason: str, who: str) -> None:
    """Stop exchanging with a member (node KG) or a message type (type alert/1) on
    this node's own authority, even while the trust list allows it. New submissions
    are refused, queued deliveries are held, inbound envelopes are refused with a
    signed policy-denied receipt."""
    from gateway import sovereignty

    node = obj.node()
    with node.sessions() as session:
        decision = sovereignty.suspend(
            session, scope=scope, value=value, reason=reason, who=who, node=node
        )
        session.commit()
        click.echo(f"Suspension {decision.id}: {scope} {value} suspended by {who}.")


@main.command()
@click.argument("decision_id", type=ROW_ID)
@click.option("--reason", required=True, help="Why it is lifted.")
@click.option("--by", "who", required=True, help="Who decides (name or role).")
@click.pass_obj
def resume(obj: Context, decision_id: int, reason: str, who: str) -> None:
    """Lift a suspension; held deliveries go out at their next retry."""
    from gateway import sovereignty

    with obj.node().sessions() as session:
        decision = sovereignty.lift(session, decision_id, reason=reason, who=who)
        session.commit()
        click.echo(f"Suspension {decision.id} ({decision.scope} {decision.value}) lifted by {who}.")


@main.command()
@click.option("--all", "show_all", is_flag=True, help="Also the lifted ones.")
@click.pass_obj
def suspensions(obj: Context, show_all: bool) -> None:
    """Local suspensions, with who decided and why."""
    from gateway import sovereignty

    with obj.node().sessions() as session:
        for row in sovereignty.listing(session, include_lifted=show_all):
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(row.created_at))
            click.echo(
                f"{row.id:>4} {row.scope} {row.value:<10} since {when} by "
                f"{row.decided_by}: {row.reason}"
            )
            if row.lifted_at is not None:
                lifted = time.strftime("%Y-%m-%d %H:%M", time.gmtime(row.lifted_at))
                click.echo(f"     lifted {lifted} by {row.lifted_by}: {row.lift_reason}")


# ---------------------------------------------------------------------------- tokens


@main.group()
def token() -> None:
    """Issue, list and revoke API tokens (agency systems, administration, persons)."""


@token.command("issue")
@click.argument("agency", required=False)
@click.option("--label", default="", help="Who or what uses the token (up to 200 characters).")
@click.option(
    "--role",
    type=click.Choice(["agency", "admin", "observer"]),
    default="agency",
    show_default=True,
    help="agency: an agency's system on the agency API; admin: the admin API; observer: "
    "the admin API, read only.",
)
@click.option("--user", "user_name", help="Issue the token to this person (gateway user add).")
@click.pass_obj
def token_issue(
    obj: Context, agency: str | None, label: str, role: str, user_name: str | None
) -> None:
    """Issue a token for AGENCY (e.g. kz-police; for --role admin or observer, the
    holder's name), or with --user for a person, with the person's agency and role.
    It is shown once; only a hash is kept."""
    from gateway import tokens, users

    if len(label) > 200:
        _fail("bad-label", f"--label is {len(label)} characters; keep it to 200")
    if (agency is None) == (user_name is None):
        _fail("bad-arguments", "give either AGENCY or --user NAME")
    source = click.get_current_context().get_parameter_source("role")
    if user_name is not None and source is not ParameterSource.DEFAULT:
        _fail(
            "bad-arguments",
            "--role is not for --user: a person's token has the person's role "
            "(gateway user list); give AGENCY with --role for a system's token",
        )
    node = obj.node()
    with node.sessions() as session:
        if user_name is not None:
            person = users.get(session, user_name)
            issued = tokens.issue(session, person.agency, label, user=person, by=_operator())
            holder = f"{person.name} ({person.role}, {person.agency})"
        else:
            assert agency is not None
            issued = tokens.issue(session, agency, label, role=role, by=_operator())
            holder = issued.agency
        session.commit()
    click.echo(f"Token {issued.id} for {holder} (shown once, store it safely):")
    click.echo(issued.secret)


def _operator() -> str:
    """Who ran a command, for the audit log: the operating-system account."""
    try:
        account = getpass.getuser()
    except (KeyError, OSError):  # no name for this user id (a container)
        account = f"uid {os.getuid()}"
    # From the environment (LOGNAME, USER): bytes that are not UTF-8, control characters.
    account = account.encode("utf-8", "backslashreplace").decode("utf-8")
    account = "".join(c if c.isprintable() else "?" for c in account)
    return f"command line ({account[:100]})"


@token.command("list")
@click.pass_obj
def token_list(obj: Context) -> None:
    """List tokens (never their secrets)."""
    from gateway import tokens

    with obj.node().sessions() as session:
        for row in tokens.listing(session):
            state = "revoked" if row.revoked_at else "active"
            click.echo(
                f"{row.id:>4} {row.role:<8} {row.agency:<20} {row.prefix}… {state} {row.label}"
            )


@token.command("revoke")
@click.argument("token_id", type=ROW_ID)
@click.pass_obj
def token_revoke(obj: Context, token_id: int) -> None:
    """Revoke a token at once."""
    from gateway import tokens

    with obj.node().sessions() as session:
        row, revoked = tokens.revoke(session, token_id, by=_operator())
        session.commit()  # revoking twice changes nothing, and says so
        if not revoked:
            click.echo(
                f"Token {row.id} for {row.agency} was already revoked at {_utc(row.revoked_at)}."
            )
        else:
            click.echo(f"Token {row.id} for {row.agency} revoked.")


@main.group()
def user() -> None:
    """The people who use this node, each with one role at one agency."""


@user.command("add")
@click.argument("name")
@click.option("--full-name", required=True, help="The person's full name.")
@click.option("--agency", required=True, help="The person's agency, e.g. kz-police.")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["officer", "prosecutor", "central-authority", "caseworker", "dpo", "admin"]),
    help="What the person may do (docs/operations.md, 'Users and roles').",
)
@click.option("--by", "who", required=True, help="Who adds the user (recorded).")
@click.pass_obj
def user_add(obj: Context, name: str, full_name: str, agency: str, role: str, who: str) -> None:
    """Add a user NAME (e.g. a.seitkali); then issue a token with 'token issue --user'."""
    from gateway import users

    with obj.node().sessions() as session:
        row = users.add(session, name, full_name=full_name, agency=agency, role=role, by=who)
        session.commit()
        click.echo(f"User {row.name} ({row.full_name}), {row.role} at {row.agency}, added.")


@user.command("list")
@click.pass_obj
def user_list(obj: Context) -> None:
    """Users with their role, agency and state."""
    from gateway import users

    with obj.node().sessions() as session:
        for row in users.listing(session):
            state = f"disabled: {row.disabled_reason}" if row.disabled_at else "active"
            click.echo(f"{row.name:<20} {row.role:<18} {row.agency:<16} {state}  {row.full_name}")


@user.command("disable")
@click.argument("name")
@click.option("--reason", required=True, help="Why (recorded).")
@click.option("--by", "who", required=True, help="Who decides (recorded).")
@click.pass_obj
def user_disable(obj: Context, name: str, reason: str, who: str) -> None:
    """Disable a user: their tokens stop working at once; the record stays."""
    from gateway import users

    with obj.node().sessions() as session:
        row, disabled = users.disable(session, name, reason=reason, by=who)
        session.commit()  # disabling twice keeps the first decision, and says so
        if not disabled:
            click.echo(
                f"User {name} was already disabled at {_utc(row.disabled_at)} by "
                f"{row.disabled_by} ({row.disabled_reason}); nothing changed."
            )
        else:
            click.echo(f"User {name} disabled.")


# ---------------------------------------------------------------------------- running


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(obj: Context) -> None:
    """Apply pending migrations (also done whenever the node starts), then record the
    identifiers of received H2 data not recorded yet (after an upgrade that changed the
    match keys: every message's), a batch of 500 per transaction."""
    from gateway import db as database
    from gateway import onward

    settings = obj.settings()
    engine = database.make_engine(
        settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    try:
        database.upgrade(engine)
        recorded = onward.index_pending(database.session_factory(engine), int(time.time()))
    finally:
        engine.dispose()
    click.echo("Database is at the current schema.")
    if recorded:
        click.echo(f"{recorded} received messages looked at for H2 identifiers.")


def _bind(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """HOST:PORT ([IPv6]:PORT) or unix:PATH, as gunicorn takes it; nothing implicit."""
    if not is_bind(value):
        raise click.BadParameter(
            f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8080 or [::1]:8080, port 1-65535) "
            "or unix:PATH"
        )
    return value


def _cannot_listen(bind: str) -> str | None:
    """Why gunicorn could not listen on ``bind`` now (a port another process holds, an
    address not of this host, a socket folder that does not exist), or None."""
    if bind.startswith("unix:"):
        folder = Path(bind.removeprefix("unix:")).parent
        if not folder.is_dir():
            return f"cannot listen on {bind}: the folder {folder} does not exist"
        return None
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as gunicorn chooses
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
            probe.bind((host, int(port)))
    except OSError as e:
        why = "another process listens there" if e.errno == errno.EADDRINUSE else e.strerror
        return f"cannot listen on {bind}: {why}; choose another --bind"
    return None


@main.command()
@click.option(
    "--bind",
    default="127.0.0.1:8080",
    show_default=True,
    callback=_bind,
    help="HOST:PORT or unix:PATH to listen on.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=1024),  # as GATEWAY_WORKERS (gunicorn_conf.MAX_WORKERS)
    default=None,
    help="gunicorn workers (default 2 per core, or GATEWAY_WORKERS).",
)
@click.pass_obj
def serve(obj: Context, bind: str, workers: int | None) -> None:
    """Serve the peer, agency and admin APIs under gunicorn (gateway/gunicorn_conf.py).

    A passphrase typed at the prompt is handed to the workers in their environment."""
    # gunicorn reads GATEWAY_WORKERS and GATEWAY_THREADS in that module, whatever
    # --workers says: check them here (importing the module checks them too), so a bad
    # value is one error line, not a server that listens with no worker. GATEWAY_BIND
    # has no effect here (--bind does): it is not handed on, nor judged.
    os.environ.pop("GATEWAY_BIND", None)
    from gateway import gunicorn_conf

    gunicorn_conf.workers_from_env()
    gunicorn_conf.threads_from_env()
    _ = obj.node().keys  # fail here, with a clear error, rather than in every worker
    problem = _cannot_listen(bind)
    if problem is not None:  # said once, not as gunicorn's retries for 5 s
        _fail("bind-failed", problem)
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:gateway.gunicorn_conf",
        "--bind",
        bind,
    ]
    if workers:
        argv += ["--workers", str(workers)]
    argv.append("gateway.wsgi:app")
    os.environ["GATEWAY_INSTANCE"] = str(obj.instance.resolve())
    if obj.passphrase is not None:
        os.environ["GATEWAY_KEY_PASSPHRASE"] = obj.passphrase
    os.execv(sys.executable, argv)


@main.command()
@click.option(
    "--once",
    is_flag=True,
    help="Send one batch (up to dispatch_batch deliveries) of what is due, then exit.",
)
@click.option("--until-idle", is_flag=True, help="Loop until nothing is due, then exit.")
@click.pass_obj
def dispatch(obj: Context, once: bool, until_idle: bool) -> None:
    """Run the dispatcher: send queued envelopes, record receipts, retry with backoff.

    Without --once or --until-idle it runs until interrupted (Ctrl-C). On PostgreSQL,
    while this host's clock is further off the database server's than the leases
    allow, it claims nothing: the loop logs error clock-skew and waits; --once and
    --until-idle exit with that error (status 2). A round that fails on the database
    is logged and tried again after 5 s (doubling up to 60 s); --once and
    --until-idle exit with database-unavailable instead (database-damaged when a table
    of the node is missing).

    It needs the node's keys (GATEWAY_KEY_PASSPHRASE, or a prompt at the start): it
    signs the audit log's checkpoints, co-signs the peers' it witnesses, and seals
    a message again when keys changed under it.
    """
    from gateway.dispatcher import Dispatcher

    if once and until_idle:
        _fail("bad-option", "give --once or --until-idle, not both")
    node = obj.node()
    # Now, not at the first checkpoint or witnessing of a loop that runs for days: a
    # missing passphrase is said before anything is sent.
    _ = node.keys
    dispatcher = Dispatcher(node)
    if once:
        outcomes = dispatcher.run_once()
        if not outcomes:
            click.echo("Nothing due: 0 deliveries attempted.")
            return
        click.echo(
            f"{len(outcomes)} deliveries attempted: "
            + ", ".join(f"{o.state}{'/' + o.code if o.code else ''}" for o in outcomes)
        )
        return
    try:
        dispatcher.run(until_idle=until_idle)
    except KeyboardInterrupt:
        click.echo("Dispatcher stopped.", err=True)


# ---------------------------------------------------------------------------- outbox / inbox


@main.group()
def outbox() -> None:
    """Follow outbound messages and their deliveries."""


@outbox.command("list")
@click.option(
    "--state",
    type=click.Choice(DeliveryState.ALL),
    default=None,
    help="Only messages with a delivery in this state.",
)
@click.option("--limit", type=LIMIT, default=50, show_default=True, help="At most this many.")
@click.pass_obj
def outbox_list(obj: Context, state: str | None, limit: int) -> None:
    """Outbound messages, newest first, with each recipient's delivery state."""
    from gateway import outbox as service

    with obj.node().sessions() as session:
        for message in service.list_messages(session, state=state, limit=limit):
            states = " ".join(
                f"{d.recipient}:{d.state}" + (f"({d.last_code})" if d.last_code else "")
                for d in message.deliveries
            )
            click.echo(f"{message.id} {message.typ:<10} {message.agency:<16} {states}")


@outbox.command("show")
@click.argument("message_id")
@click.pass_obj
def outbox_show(obj: Context, message_id: str) -> None:
    """One message with every delivery, its history and receipt."""
    from gateway import outbox as service

    with obj.node().sessions() as session:
        _out(service.message_view(service.get_message(session, message_id)))


@outbox.command("retry")
@click.argument("delivery_id", type=ROW_ID)
@click.pass_obj
def outbox_retry(obj: Context, delivery_id: int) -> None:
    """Queue a rejected or retrying delivery again (the same envelope is resent)."""
    from gateway import outbox as service

    with obj.node().sessions() as session:
        delivery = service.retry(
            session, delivery_id, policy=obj.node().policy(), who="operator (cli)"
        )
        session.commit()
        click.echo(f"Delivery {delivery.id} to {delivery.recipient} queued again.")


@main.group()
def inbox() -> None:
    """Read received messages and refused envelopes."""


@inbox.command("list")
@click.option(
    "--after",
    type=click.IntRange(0, 2**31 - 1),
    default=0,
    help="Only messages with a larger id (page through the inbox).",
)
@click.option("--limit", type=LIMIT, default=50, show_default=True, help="At most this many.")
@click.pass_obj
def inbox_list(obj: Context, after: int, limit: int) -> None:
    """Accepted inbound messages (metadata only); HELD marks a quarantined one."""
    from gateway import inbox as service

    with obj.node().sessions() as session:
        for message in service.list_inbox(session, after=after, limit=limit):
            click.echo(
                f"{message.id:>6} {message.envelope_id} from {message.sender:<8} {message.typ}"
                + (" HELD" if message.held else "")
            )


@inbox.command("quarantined")
@click.pass_obj
def inbox_quarantined(obj: Context) -> None:
    """Messages held because the key that signed them was revoked after they arrived
    and before any agency read them."""
    from gateway import quarantine

    with obj.node().sessions() as session:
        for message in quarantine.held(session):
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(message.quarantined_at or 0))
            click.echo(
                f"{message.id:>6} {message.envelope_id} from {message.sender:<8} "
                f"held {when}: {message.quarantine_reason}"
            )


@inbox.command("release")
@click.argument("inbound_id", type=ROW_ID)
@click.option("--reason", required=True, help="Why it may be trusted (e.g. confirmed by phone).")
@click.option("--by", "who", required=True, help="Who decides (name or role).")
@click.pass_obj
def inbox_release(obj: Context, inbound_id: int, reason: str, who: str) -> None:
    """Release a quarantined message to the agencies, with a recorded reason."""
    from gateway import quarantine

    with obj.node().sessions() as session:
        message = quarantine.release(session, inbound_id, reason=reason, who=who)
        session.commit()
        click.echo(f"Inbound message {message.id} released by {who}.")


@inbox.command("dismiss-correction")
@click.argument("inbound_id", type=ROW_ID)
@click.option(
    "--reason",
    required=True,
    help="What was done instead (e.g. applied by hand to the message it reached us as).",
)
@click.option("--by", "who", required=True, help="Who decides (name or role).")
@click.pass_obj
def inbox_dismiss_correction(obj: Context, inbound_id: int, reason: str, who: str) -> None:
    """Stop a correction waiting for its original from waiting, with a recorded reason.

    For one the data protection report shows as STALE: its original never came under
    the id it names (its sender sealed it again under another one, or it never will).
    The correction stays in the inbox; it is no longer applied if the original comes
    after all, nor reported as waiting."""
    from gateway import corrections

    with obj.node().sessions() as session:
        message = corrections.dismiss_waiting(session, inbound_id, reason=reason, who=who)
        session.commit()
        click.echo(f"Correction {message.envelope_id} (inbound {message.id}) no longer waits.")


@inbox.command("rejected")
@click.option("--limit", type=LIMIT, default=50, show_default=True, help="At most this many.")
@click.pass_obj
def inbox_rejected(obj: Context, limit: int) -> None:
    """Refused envelopes with their rejection code, newest first.

    "unverified" rows were refused before the signature held: their sender is only
    what the envelope claims."""
    from gateway import inbox as service

    with obj.node().sessions() as session:
        for row in service.list_rejections(session, limit=limit):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row.received_at))
            click.echo(
                f"{row.id:>6} {when} {row.code:<24} from {row.sender or '?':<8} "
                f"{'signed' if row.authenticated else 'unverified':<10} "
                f"{row.envelope_id or '-'} {row.detail}"
            )


# ---------------------------------------------------------------------------- audit


@main.group()
def audit() -> None:
    """The node's tamper-evident audit log (Merkle tree, signed checkpoints)."""


@audit.command("checkpoint")
@click.pass_obj
def audit_checkpoint(obj: Context) -> None:
    """Sign a checkpoint over every entry now (dispatchers do this on their own)."""
    from gateway.audit import log

    node = obj.node()
    made = log.checkpoint(node)
    if made is None:
        click.echo("No new entries since the last checkpoint.")
        return
    click.echo(made.note, nl=False)


@audit.command("verify")
@click.pass_obj
def audit_verify(obj: Context) -> None:
    """Check every entry and checkpoint; name the first that does not hold (exit 1)."""
    from gateway.audit import log

    node = obj.node()
    trust_list = node.trust()
    with node.sessions() as session:
        finding = log.verify(session, trust_list, node.id)
    if not finding.ok:
        click.echo(f"AUDIT LOG BROKEN after {finding.entries} entries: {finding.problem}", err=True)
        sys.exit(1)
    click.echo(
        f"Audit log intact: {finding.entries} entries, {finding.checkpoints} "
        f"checkpoint{'' if finding.checkpoints == 1 else 's'} verified."
    )


@audit.command("export")
@click.argument("message_id")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    required=True,
    help="Where to write the evidence bundle (JSON).",
)
@click.pass_obj
def audit_export(obj: Context, message_id: str, out: str) -> None:
    """Write a portable evidence bundle for one message: its audit entries with
    inclusion proofs, the signed checkpoint, the trust list, envelope and receipts."""
    from gateway.audit import evidence

    if os.path.lexists(out):
        _fail("file-exists", f"{out} exists; choose another file name, nothing is overwritten")
    try:
        bundle = evidence.export(obj.node(), message_id)
    except evidence.EvidenceError as e:
        _fail(e.code, e.message)
    # Metadata of who exchanged what with whom: readable by its owner only; created
    # here (O_EXCL), so a file that appeared meanwhile is not overwritten either.
    try:
        handle = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        _fail("file-exists", f"{out} exists; choose another file name, nothing is overwritten")
    with os.fdopen(handle, "wb") as file:
        file.write((json.dumps(bundle, indent=2) + "\n").encode("utf-8"))
    click.echo(
        f"Evidence for {message_id}: {len(bundle['entries'])} audit entries, "
        f"{len(bundle['envelopes'])} envelope(s), {len(bundle['receipts'])} receipt(s) "
        f"written to {out}"
    )


@audit.command("check")
@click.argument("bundle", type=INPUT)
@click.option(
    "--anchor",
    default=None,
    callback=_anchor,
    help="The federation's published anchor (SHA-256 of trust list version 1) to "
    "verify the bundle's trust list from.",
)
def audit_check(bundle: str, anchor: str | None) -> None:
    """Check an evidence bundle offline (no node, no database, no network). Its trust
    list is verified from version 1 along the versions it carries: give the
    federation's published anchor with --anchor, or compare the printed one."""
    from gateway.audit import evidence

    try:
        try:
            data = json.loads(Path(bundle).read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise evidence.EvidenceError(
                f"{bundle} is not an evidence bundle: not JSON text in UTF-8 ({e})"
            ) from e
        summary = evidence.check(data, anchor=bytes.fromhex(anchor) if anchor else None)
    except (ValueError, RecursionError, evidence.EvidenceError) as e:
        click.echo(f"EVIDENCE DOES NOT VERIFY: {getattr(e, 'message', e)}", err=True)
        sys.exit(1)
    click.echo(
        f"Evidence verifies: {summary['node']}'s log of {summary['checkpoint_size']} "
        f"entries contains {', '.join(summary['shown'])} for {summary['message']}."
    )
    witnesses = summary["witnesses"]
    click.echo(
        f"Checkpoint co-signed by {', '.join(witnesses)}."
        if witnesses
        else "Checkpoint not co-signed by any other member (witnessing had not reached it)."
    )
    follows = (
        f"Trust list version {summary['trust_list_version']}, verified from version "
        f"{summary['anchor_version']}"
    )
    if summary["trust_list_expires"] < time.time():
        click.echo(
            f"WARNING: trust list version {summary['trust_list_version']} expired on "
            f"{_utc(summary['trust_list_expires'])}: keys are judged by it, and a later "
            "version may have revoked one this evidence relies on. Ask the node for a "
            "fresh export, or compare its keys with the federation's current list.",
            err=True,
        )
    if summary["anchor_checked"]:
        click.echo(f"{follows}, whose SHA-256 is the anchor given.")
    else:
        click.echo(
            f"{follows}, whose SHA-256 is {summary['anchor']}: compare it with the "
            "anchor the federation published (or give it with --anchor)."
        )


@audit.command("witness")
@click.option("--peer", default=None, help="Only this member (default: every other member).")
@click.pass_obj
def audit_witness(obj: Context, peer: str | None) -> None:
    """Fetch peers' audit checkpoints, check consistency, co-sign, and collect their
    co-signatures of this node's checkpoints (dispatchers do this on their own every
    checkpoint_interval seconds)."""
    from gateway.audit.witness import Witness

    node = obj.node()
    witness = Witness(node)
    peers = [peer] if peer else [p for p in node.trust().node_ids if p != node.id]
    failed = []
    for member in peers:
        try:
            state = witness.witness(member)
            if state is None:
                click.echo(f"{member}: no checkpoint yet")
            elif state.problem:
                click.echo(f"{member}: ALARM [{state.problem_code}] {state.problem}")
            else:
                click.echo(f"{member}: {state.size} entries, consistent, co-signed")
            collected = witness.collect(member)
        except (GatewayError, TrustError) as e:
            _echo_unproven(node, member)
            if peer:  # the one asked for: its error is the answer
                raise
            # One unreachable member does not keep the others from being witnessed.
            click.echo(f"{member}: error [{e.code}]: {getattr(e, 'message', e)}", err=True)
            failed.append(member)
            continue
        if collected:
            click.echo(f"{member}: co-signed this node's checkpoint; co-signature kept")
    if failed:
        _fail("witness-incomplete", f"could not witness {', '.join(failed)}; see above")


def _echo_unproven(node: Node, peer: str) -> None:
    """Say so when ``peer`` signed a larger log that it has not proven yet."""
    from gateway.audit.witness import unproven_alarm_after
    from gateway.models import WitnessState

    with node.sessions() as session:
        state = session.get(WitnessState, peer)
    if state is None or state.unproven_since is None:
        return
    alarm = state.unproven_since + unproven_alarm_after(node.settings.checkpoint_interval)
    click.echo(
        f"{peer}: signed a log of {state.unproven_size} entries, unproven since "
        f"{_utc(state.unproven_since)} (an audit-unproven alarm from {_utc(int(alarm))})",
        err=True,
    )


@audit.command("reset-witness")
@click.argument("peer")
@click.option("--reason", required=True, help="What the investigation found.")
@click.option("--by", "who", required=True, help="Who decides (name or role).")
@click.pass_obj
def audit_reset_witness(obj: Context, peer: str, reason: str, who: str) -> None:
    """Clear a fork, rollback or unproven-checkpoint alarm about PEER after
    investigating it: the next checkpoint of PEER is trusted as on first sight.
    Recorded in the audit log."""
    from gateway.audit import log
    from gateway.audit.witness import unproven_message
    from gateway.models import WitnessState
    from gateway.sovereignty import require_reason_and_name

    require_reason_and_name(reason, who)
    with obj.node().sessions() as session:
        state = session.get(WitnessState, peer)
        if state is None:
            _fail("not-found", f"this node has not witnessed {peer}")
        if state.problem is None and state.unproven_since is None:
            _fail(
                "no-alarm",
                f"there is no alarm about {peer} to clear; its witness state is kept, so a "
                "later rewrite of its log is still found",
            )
        log.record(
            session,
            "witness-reset",
            peer=peer,
            size=state.size,
            problem=state.problem or unproven_message(state, int(time.time())),
            by=who,
            reason=reason,
        )
        session.delete(state)
        session.commit()
    click.echo(f"Witness state of {peer} cleared by {who}.")


@audit.command("dpo")
@click.option(
    "--since", help="First local day (YYYY-MM-DD); default 30 days before the end of --until."
)
@click.option("--until", help="Last local day (YYYY-MM-DD), included; default now.")
@click.option("--by", "who", required=True, help="Who asks (recorded in the audit log).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.pass_obj
def audit_dpo(obj: Context, since: str | None, until: str | None, who: str, as_json: bool) -> None:
    """The data protection officer's report: who consulted and who disclosed what and
    why, unusual access (off-hours, bulk reads, many hit queries, reads without a
    justification), overdue case-data requests, corrections still waiting for their
    original, and stored messages and refused envelopes' bytes due for purge. Exit 3
    when anything is flagged, overdue or stale."""
    from gateway.audit import oversight
    from gateway.sovereignty import require_name

    require_name(who)
    node = obj.node()
    result = oversight.report_for(node, since, until, by=f"cli {who}")
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        click.echo(oversight.render(result, node.settings))
    overdue = (
        any(item["overdue"] for item in result["due_for_purge"])
        or result["refused_bytes"]["overdue"] > 0
    )
    stale = any(item["stale"] for item in result["waiting_corrections"])
    if result["unusual"] or result["overdue_requests"] or overdue or stale:
        sys.exit(3)


# ---------------------------------------------------------------------------- demo


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object.")
@click.option(
    "--keep",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the nodes' folders in this new or empty folder instead of a temporary one.",
)
def demo(as_json: bool, keep: str | None) -> None:
    """Run a three-node federation (KZ, KG, UZ) on 127.0.0.1 exchanging real messages."""
    from gateway.demo import run_demo

    summary = run_demo(as_json=as_json, keep=keep)
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
    whole = summary["delivered"] == summary["receipts_verified"] == summary["sent"]
    sys.exit(0 if whole and summary["lost"] == summary["duplicates"] == 0 else 1)


from gateway.cli_admin import admin  # noqa: E402  (offline trust-list administration)

main.add_command(admin)

from gateway.cli_policy import policy_group, purge_command  # noqa: E402

main.add_command(policy_group)
main.add_command(purge_command)
