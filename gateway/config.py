"""Node configuration, in layers: defaults → instance file ``gateway.toml`` →
``GATEWAY_*`` environment variables → explicit overrides (tests).

Every setting is read here once into a typed :class:`Settings`, checked, and
then used everywhere else; an inconsistent configuration stops the node at
start with a sentence saying what to change.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.util import asbool

from gateway.errors import ConfigError
from keys.sealed import atomic_write, trusted_target

NODE_RE = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,16})?\Z")
ENV_PREFIX = "GATEWAY_"
INSTANCE_FILE = "gateway.toml"


@dataclass(frozen=True)
class Settings:
    """All settings of one node. Names map to ``GATEWAY_<NAME>`` and TOML keys ``<name>``."""

    node: str
    instance: str
    database_url: str = ""
    key_file: str = ""
    key_passphrase: str | None = None
    trust_anchor: str = ""
    max_envelope_bytes: int = 1024 * 1024
    clock_skew: int = 120
    max_ttl: int = 30 * 24 * 3600
    message_ttl: int = 7 * 24 * 3600
    peer_timeout: float = 10.0
    dispatch_lease: int = 60
    dispatch_batch: int = 20
    dispatch_interval: float = 1.0
    backoff_base: float = 2.0
    backoff_cap: float = 900.0
    trust_refresh: float = 5.0
    # Plain-HTTP peer endpoints are refused unless this is set (tests and demos on
    # 127.0.0.1); a real federation lists https:// endpoints behind TLS.
    allow_insecure_http: bool = False
    max_rejection_bytes: int = 64 * 1024
    # A signed audit checkpoint every this many new entries, or after this many seconds
    # when there is at least one new entry (the dispatcher loop signs them).
    checkpoint_entries: int = 100
    checkpoint_interval: float = 60.0
    # What the data protection officer's report (gateway audit dpo) flags as unusual:
    # reads outside office hours (local time of ``timezone``, ISO weekdays 1=Monday),
    # more than ``bulk_read_limit`` messages read by one agency within an hour, and
    # more than ``hit_query_limit`` hit/no-hit queries sent by one agency in a day.
    timezone: str = "UTC"
    office_hours: str = "08-19"
    office_days: str = "1-5"
    bulk_read_limit: int = 50
    hit_query_limit: int = 20
    # Messages whose retention ends within this many days are listed as due for purge.
    purge_notice_days: int = 14
    # SQLite only: "full" syncs the write-ahead log to disk at every commit, so what
    # was answered with a receipt or a 202 survives a power loss or an operating
    # system crash; "normal" syncs only at checkpoints (faster; such a crash can undo
    # the last commits). PostgreSQL has its own settings (synchronous_commit).
    sqlite_synchronous: str = "full"

    @property
    def clock_bound(self) -> float:
        """How far (seconds) a dispatcher host's clock may be off the database server's
        for leases to hold: two hosts each within it disagree by at most half the
        lease's margin over one attempt (``dispatch_lease`` − 2 × ``peer_timeout``),
        and the other half is left for the time between renewing a lease and the
        attempt's start, and for the error of measuring the offset."""
        return (self.dispatch_lease - 2 * self.peer_timeout) / 4

    def check(self) -> Settings:
        if not NODE_RE.match(self.node):
            raise ConfigError(
                "config-node",
                f"node id {self.node!r} must be an ISO 3166 alpha-2 code like KZ "
                "or KZ-MVD; set GATEWAY_NODE or node in gateway.toml",
            )
        if not re.fullmatch(r"[0-9a-f]{64}", self.trust_anchor or "") and self.trust_anchor:
            raise ConfigError(
                "config-anchor",
                "trust_anchor must be the 64-hex-digit SHA-256 of trust list "
                "version 1, as published by the federation's administrators",
            )
        if self.peer_timeout * 2 >= self.dispatch_lease:
            raise ConfigError(
                "config-lease",
                f"dispatch_lease ({self.dispatch_lease}s) must exceed twice "
                f"peer_timeout ({self.peer_timeout}s) so no two dispatchers send one message "
                "at once",
            )
        if self.message_ttl > self.max_ttl:
            raise ConfigError("config-ttl", "message_ttl must not exceed max_ttl")
        if self.sqlite_synchronous not in SQLITE_SYNCHRONOUS:
            raise ConfigError(
                "config-synchronous",
                f'sqlite_synchronous {self.sqlite_synchronous!r} must be "full" (every '
                'commit synced to disk: receipts survive a power loss) or "normal" '
                "(synced at checkpoints only: faster, but a power loss or system crash can "
                "undo the last commits)",
            )
        self.zone()
        self.office()
        return self

    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ConfigError(
                "config-timezone",
                f"timezone {self.timezone!r} is not an IANA time zone such as Asia/Almaty, "
                "Asia/Bishkek, Asia/Dushanbe, Asia/Ashgabat or Asia/Tashkent",
            ) from e

    def office(self) -> tuple[range, range]:
        """Office hours (range of local hours) and office days (ISO weekdays)."""
        spans = []
        for name, text, low, high in (
            ("office_hours", self.office_hours, 0, 24),
            ("office_days", self.office_days, 1, 7),
        ):
            match = re.fullmatch(r"(\d{1,2})-(\d{1,2})", text.strip())
            first, last = (int(match[1]), int(match[2])) if match else (-1, -1)
            if not (match and low <= first < last <= high):
                raise ConfigError(
                    "config-office",
                    f"{name} {text!r} must be FIRST-LAST within {low}-{high}, "
                    'e.g. office_hours = "08-19" and office_days = "1-5" (Monday to Friday)',
                )
            spans.append(range(first, last + (1 if name == "office_days" else 0)))
        return spans[0], spans[1]


# Lower bounds of numeric settings: a zero or negative value would stop the node from
# doing its job without saying why (a zero lease, a negative timeout, no batch).
MINIMUM: dict[str, float] = {
    "max_envelope_bytes": 1,
    "clock_skew": 0,
    "max_ttl": 1,
    "message_ttl": 1,
    "peer_timeout": 0.001,
    "dispatch_lease": 1,
    "dispatch_batch": 1,
    "dispatch_interval": 0,
    "backoff_base": 0.001,
    "backoff_cap": 0.001,
    "trust_refresh": 0,
    "max_rejection_bytes": 0,
    "checkpoint_entries": 1,
    "checkpoint_interval": 0,
    "bulk_read_limit": 1,
    "hit_query_limit": 1,
    "purge_notice_days": 0,
}
DAY = 86400
GIB = 1024**3
# Upper bounds: far above any sensible value, and low enough that every time, size and
# count computed from a setting fits the database's 64-bit integers and Python's
# sleep and socket timeouts (a huge value would fail later, mid-work, with an
# OverflowError instead of stopping the node at start).
MAXIMUM: dict[str, float] = {
    "max_envelope_bytes": GIB,
    "clock_skew": DAY,
    "max_ttl": 3650 * DAY,
    "message_ttl": 3650 * DAY,
    "peer_timeout": 3600,
    "dispatch_lease": DAY,
    "dispatch_batch": 10_000,
    "dispatch_interval": 3600,
    "backoff_base": DAY,
    "backoff_cap": 365 * DAY,
    "trust_refresh": DAY,
    "max_rejection_bytes": GIB,
    "checkpoint_entries": 1_000_000,
    "checkpoint_interval": DAY,
    "bulk_read_limit": 1_000_000,
    "hit_query_limit": 1_000_000,
    "purge_notice_days": 3650,
}
# SQLite's PRAGMA synchronous levels a node may run with (gateway/db.py).
SQLITE_SYNCHRONOUS = ("full", "normal")
DATABASE_BACKENDS = ("sqlite", "postgresql")
# The URL forms the node runs on: SQLite through Python's own sqlite3, PostgreSQL
# through psycopg 3 (``postgresql://`` is opened with psycopg, see gateway/db.py).
DATABASE_DRIVERS = {
    "sqlite": "sqlite3",
    "sqlite+pysqlite": "sqlite3",
    "postgresql": "psycopg",
    "postgresql+psycopg": "psycopg",
}
DATABASE_FORMS = (
    "sqlite:////path/gateway.db (or sqlite+pysqlite://…) or postgresql://user@host/dbname "
    "(or postgresql+psycopg://…)"
)
# Settings that name a file or a database: a control character there (a NUL, a newline)
# is a slip, and a NUL would fail deep inside the file system calls.
PATH_SETTINGS = ("key_file",)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


# Settings whose value is never written in an error: a wrong value may still be the
# secret (a passphrase of digits written without quotes), and errors go to logs.
SECRET_SETTINGS = ("key_passphrase",)


def is_bind(value: str) -> bool:
    """HOST:PORT ([IPv6]:PORT, port 1-65535) or unix:PATH, as gunicorn takes them; nothing
    implicit (``gateway serve --bind``, ``GATEWAY_BIND``)."""
    if value.startswith("unix:") and len(value) > len("unix:"):
        return True
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})", value)
    return match is not None and 1 <= int(match.group(2)) <= 65535


def _invalid(name: str, raw: Any, expected: str) -> ConfigError:
    shown = "(not shown: it is secret)" if name in SECRET_SETTINGS else repr(raw)
    return ConfigError(
        "config-value",
        f"setting {name} has an invalid value {shown}: expected {expected}; "
        f"fix {name} in {INSTANCE_FILE} or {ENV_PREFIX}{name.upper()}",
    )


def _coerce(name: str, raw: Any, kind: Any) -> Any:
    """``raw`` (a TOML value, or a string from the environment) as the setting's type.

    Strict on purpose: TOML ``true`` is not a number and ``1.5`` is not an integer, so a
    slip in ``gateway.toml`` stops the node instead of being silently truncated."""
    text_kind = str(kind)
    if text_kind.startswith("bool"):
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(raw, str) and raw.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise _invalid(name, raw, "true or false")
    if text_kind.startswith("int"):
        if isinstance(raw, int) and not isinstance(raw, bool):
            value: float = raw
        elif isinstance(raw, str):
            try:
                value = int(raw.strip())
            except ValueError as e:
                raise _invalid(name, raw, "a whole number") from e
        else:
            raise _invalid(name, raw, "a whole number")
    elif text_kind.startswith("float"):
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            value = float(raw)
        elif isinstance(raw, str):
            try:
                value = float(raw.strip())
            except ValueError as e:
                raise _invalid(name, raw, "a number of seconds") from e
        else:
            raise _invalid(name, raw, "a number of seconds")
        if not math.isfinite(value):
            raise _invalid(name, raw, "a finite number")
    else:  # str and str | None
        if not isinstance(raw, str):
            raise _invalid(name, raw, "a string in double quotes")
        if name in PATH_SETTINGS and CONTROL.search(raw):
            raise _invalid(name, raw, "a file path without control characters (NUL, newline, …)")
        return raw
    minimum, maximum = MINIMUM.get(name, -math.inf), MAXIMUM.get(name, math.inf)
    if not minimum <= value <= maximum:
        raise _invalid(name, raw, f"a value from {minimum:g} to {maximum:.0f}")
    return value


def _driver_installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def is_utf8(text: str) -> bool:
    """False for a str holding undecodable bytes (surrogate escapes from the OS)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_database_url(url: str) -> str:
    """``url`` if it names a database the node supports through a driver that is
    installed, else ``config-database``."""
    if not is_utf8(url):
        raise ConfigError(
            "config-database",
            f"database_url holds bytes that are not UTF-8 text; use {DATABASE_FORMS}",
        )
    control = CONTROL.search(url)
    if control:  # not echoed: the URL may hold a password
        raise ConfigError(
            "config-database",
            f"database_url contains the control character {control[0]!r} at position "
            f"{control.start()}; remove it and use {DATABASE_FORMS}",
        )
    try:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        parsed.port  # noqa: B018 - a port that is not a number raises here
    except (ArgumentError, ValueError) as e:  # ValueError: a port that is not a number
        raise ConfigError(
            "config-database",
            f"database_url {_without_password(url)!r} is not a database URL; use {DATABASE_FORMS}",
        ) from e
    if backend not in DATABASE_BACKENDS:
        raise ConfigError(
            "config-database",
            f"database_url uses {backend!r}; the node supports SQLite (sqlite:///…) and "
            "PostgreSQL (postgresql://…)",
        )
    _check_database_name(parsed)
    module = DATABASE_DRIVERS.get(parsed.drivername)
    if module is None:
        raise ConfigError(
            "config-database",
            f"database_url uses the driver {parsed.drivername!r}, which the node does not "
            f"support; use {DATABASE_FORMS}",
        )
    if not _driver_installed(module):
        raise ConfigError(
            "config-database",
            f"database_url needs the database driver {module}, which is not installed; "
            "install the gateway with its postgres extra (pip install 'xb-gateway[postgres]')",
        )
    return url


def _without_password(url: str) -> str:
    """``url`` as an error quotes it: a password in it (``scheme://user:password@``)
    written as ``***`` (errors go to logs and terminals)."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


def _check_database_name(parsed: URL) -> None:
    """A node's database is one named file or one named PostgreSQL database: not an
    in-memory SQLite database (every write lost when the process ends, and each
    process would have its own), not a relative path (a command run from another
    folder would open a new, empty database), not the server's default database."""
    database = parsed.database or ""
    query = {k: str(v) for k, v in parsed.query.items()}
    if parsed.get_backend_name() == "sqlite":
        try:
            given = parsed.query.get("uri", False)
            if isinstance(given, tuple):  # given twice
                raise ValueError(given)
            uri = asbool(given)  # as SQLite's dialect reads it
        except ValueError as e:  # neither true nor false, or given twice
            raise ConfigError(
                "config-database", "database_url: uri= must be given once, true or false"
            ) from e
        path, embedded = database, ""
        if uri:  # the file: URI's own parameters count as much as the URL's
            path, _, embedded = database.removeprefix("file:").partition("?")
        options = {(k.lower(), v.lower()) for k, v in parse_qsl(embedded) + list(query.items())}
        if path in ("", ":memory:") or (uri and options & {("mode", "memory"), ("vfs", "memdb")}):
            raise ConfigError(
                "config-database",
                "database_url names an in-memory SQLite database, which keeps nothing once "
                "the process ends; name a file: sqlite:////path/gateway.db",
            )
        if uri and options & {("nolock", "1"), ("nolock", "true"), ("vfs", "unix-none")}:
            raise ConfigError(
                "config-database",
                "database_url turns SQLite's file locking off (nolock, vfs=unix-none); the "
                "node's processes write to one file and need it",
            )
        if not os.path.isabs(path):
            raise ConfigError(
                "config-database",
                f"database_url names the relative path {path!r}, which each command would "
                "look for in the folder it runs in; give an absolute path, such as "
                "sqlite:////srv/xb1/kz/gateway.db (four slashes in all)",
            )
    elif not database and not ({"dbname", "service"} & set(query)):
        raise ConfigError(
            "config-database",
            "database_url names no database; name the node's own: "
            "postgresql://user@host/dbname (or give ?dbname= or ?service=)",
        )


def load_settings(instance: str | os.PathLike[str], **overrides: Any) -> Settings:
    """Read the layered configuration for the node whose instance folder is ``instance``."""
    if CONTROL.search(os.fspath(instance)) or not is_utf8(os.fspath(instance)):
        raise ConfigError(
            "config-file",
            f"instance folder {os.fspath(instance)!r} contains a control character (NUL, "
            "newline, …) or bytes that are not UTF-8; give the folder's path as --instance "
            "or GATEWAY_INSTANCE",
        )
    folder = Path(instance).resolve()
    values: dict[str, Any] = {}
    toml_path = folder / INSTANCE_FILE
    if toml_path.exists():
        try:
            with toml_path.open("rb") as handle:
                values.update(tomllib.load(handle))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError("config-file", f"{toml_path} is not valid TOML: {e}") from e
        except RecursionError as e:
            raise ConfigError(
                "config-file", f"{toml_path} nests arrays or tables too deeply to read"
            ) from e
        except OSError as e:
            raise ConfigError("config-file", f"cannot read {toml_path}: {e.strerror}") from e
    known = {f.name: f.type for f in fields(Settings)}
    # ``instance`` is the folder the file lives in; it cannot be set inside it.
    unknown = set(values) - set(known) | ({"instance"} & set(values))
    if unknown:
        raise ConfigError(
            "config-unknown",
            f"{toml_path} has unknown settings {sorted(unknown)}; known settings are "
            f"{', '.join(sorted(set(known) - {'instance'}))}",
        )
    unknown = set(overrides) - set(known)
    if unknown:
        raise ConfigError("config-unknown", f"unknown settings {sorted(unknown)} given")
    for name in known:
        env = os.environ.get(ENV_PREFIX + name.upper())
        if env is not None:
            values[name] = env
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["instance"] = str(folder)
    if "node" not in values:
        raise ConfigError("config-node", f"no node id: set node in {toml_path} or GATEWAY_NODE")
    for name, kind in known.items():
        if name in values and values[name] is not None:
            values[name] = _coerce(name, values[name], kind)
    if values.get("key_passphrase") == "":
        # Empty is unset, as everywhere a passphrase is read: a sealed key file is then
        # asked for at a terminal, and an unsealed one is written back unsealed.
        values["key_passphrase"] = None
    values["trust_anchor"] = values.get("trust_anchor", "").strip().lower()
    if isinstance(values.get("sqlite_synchronous"), str):
        values["sqlite_synchronous"] = values["sqlite_synchronous"].strip().lower()
    values.setdefault("database_url", "")
    if not values["database_url"]:
        values["database_url"] = f"sqlite:///{folder / 'gateway.db'}"
    check_database_url(values["database_url"])
    if not values.get("key_file"):
        values["key_file"] = str(folder / "node-keys.json")
    else:
        _check_key_file(values["key_file"], folder)
    return Settings(**values).check()


def _check_key_file(key_file: str, instance: Path) -> None:
    if not os.path.isabs(key_file):
        raise ConfigError(
            "config-value",
            f"key_file {key_file!r} is a relative path, which each command would look for "
            f"in the folder it runs in; give an absolute path such as {instance / key_file}",
        )


# TOML basic strings: these characters are escaped by name, every other control character
# (U+0000 to U+001F and U+007F) as \uXXXX; everything else is written as it is (UTF-8).
_TOML_ESCAPES = {
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
    '"': '\\"',
    "\\": "\\\\",
}


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (in double quotes) that reads back as ``text``."""
    out = []
    for char in text:
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif char < " " or char == "\x7f":
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def check_instance_values(instance: Path, settings: dict[str, Any]) -> None:
    """Refuse, with the ``config-…`` error reading would give, settings that
    ``load_settings`` would refuse in ``gateway.toml`` (``None`` values are skipped)."""
    known = {f.name: f.type for f in fields(Settings)}
    unknown = sorted(set(settings) - set(known) | ({"instance"} & set(settings)))
    if unknown:
        raise ConfigError(
            "config-unknown",
            f"unknown settings {unknown} cannot be written to {INSTANCE_FILE}; known settings "
            f"are {', '.join(sorted(set(known) - {'instance'}))}",
        )
    values = {k: _coerce(k, v, known[k]) for k, v in settings.items() if v is not None}
    for name, value in values.items():
        if isinstance(value, str) and not is_utf8(value):
            raise _invalid(name, value, "text without undecodable bytes")
    if values.get("database_url"):
        check_database_url(values["database_url"])
    if values.get("key_file"):
        _check_key_file(values["key_file"], instance)
    if isinstance(values.get("sqlite_synchronous"), str):
        values["sqlite_synchronous"] = values["sqlite_synchronous"].strip().lower()
    if "node" in values:  # without it, GATEWAY_NODE must name the node: checked on reading
        values["trust_anchor"] = values.get("trust_anchor", "").strip().lower()
        Settings(**{**values, "instance": str(instance)}).check()


def write_instance_file(instance: Path, settings: dict[str, Any]) -> Path:
    """Write ``gateway.toml`` (simple scalar values only; ``None`` means not set).

    Every value is checked first as reading the file would check it, so a value the node
    would refuse is refused here (a ``config-…`` error) and nothing is written."""
    check_instance_values(instance, settings)
    lines = ["# Node configuration; GATEWAY_<NAME> environment variables override these."]
    for key, value in settings.items():
        if value is None:
            continue
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, (int, float)):
            lines.append(f"{key} = {value}")
        else:
            lines.append(f"{key} = {toml_string(str(value))}")
    path = instance / INSTANCE_FILE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def pin_trust_anchor(instance: Path, anchor: str) -> None:
    """Write ``trust_anchor`` into the instance's ``gateway.toml``, so that every later
    start re-verifies the stored version 1 against it. The operator's comments and
    layout stay as written: an empty ``trust_anchor = ""`` line is filled in (its
    comment kept), otherwise a line is added. Raises OSError, or ConfigError when the
    file cannot be read or holds a trust_anchor line this cannot fill in."""
    path = instance / INSTANCE_FILE
    line = f'trust_anchor = "{anchor}"'
    if not path.exists():
        atomic_write(path, f"{line}\n".encode(), mode=0o600)
        return
    try:
        text = path.read_text(encoding="utf-8")
        values = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError("config-file", f"{path} cannot be read: {e}") from e
    if "trust_anchor" in values:
        text, count = _ANCHOR_LINE.subn(
            lambda found: line + (f"  {found.group(2)}" if found.group(2) else ""), text, count=1
        )
        if count != 1:
            raise ConfigError(
                "config-file",
                f"{path}: cannot find the trust_anchor line to set; set it by hand to {anchor}",
            )
    else:
        separator = "" if not text or text.endswith("\n") else "\n"
        text = f"{text}{separator}{line}\n"
    _rewrite_in_kind(path, text.encode("utf-8"))


def _rewrite_in_kind(path: Path, data: bytes) -> None:
    """Give the file at ``path`` new contents and nothing else new: a symbolic link
    stays a link (its target is rewritten), the file keeps its mode and its owner.
    The contents are replaced atomically by a new file, given the old one's owner
    and mode before it is renamed over it; a process that may not give a file away
    (not root, the file another user's, or in a group it is not in) rewrites the
    file in place instead. A link another account made is not followed (as for the
    key file: keys.sealed.trusted_target)."""
    target = Path(trusted_target(path))
    status = target.stat()
    mode = status.st_mode & 0o7777
    owner = (status.st_uid, status.st_gid)
    try:
        atomic_write(target, data, mode=mode, owner=owner)
    except PermissionError:
        with target.open("r+b") as file:
            file.write(data)
            file.truncate()
            file.flush()
            os.fsync(file.fileno())


_ANCHOR_LINE = re.compile(
    r"""^[ \t]*trust_anchor[ \t]*=[ \t]*("[ \t]*"|'[ \t]*')[ \t]*(#[^\n]*)?$""", re.MULTILINE
)
