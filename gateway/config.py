"""Node configuration, in layers: defaults → instance file ``gateway.toml`` →
``GATEWAY_*`` environment variables → explicit overrides (tests).

Every setting is read here once into a typed :class:`Settings`, checked, and
then used everywhere else; an inconsistent configuration stops the node at
start with a sentence saying what to change.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

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
    allow_insecure_http: bool = True
    max_rejection_bytes: int = 64 * 1024

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
        return self


def _coerce(name: str, raw: Any, kind: Any) -> Any:
    text_kind = str(kind)
    try:
        if "bool" in text_kind and isinstance(raw, str):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if text_kind.startswith("int"):
            return int(raw)
        if text_kind.startswith("float"):
            return float(raw)
    except (TypeError, ValueError) as e:
        raise ConfigError("config-value", f"setting {name} has an invalid value {raw!r}") from e
    return raw


def load_settings(instance: str | os.PathLike[str], **overrides: Any) -> Settings:
    """Read the layered configuration for the node whose instance folder is ``instance``."""
    folder = Path(instance).resolve()
    values: dict[str, Any] = {}
    toml_path = folder / INSTANCE_FILE
    if toml_path.exists():
        with toml_path.open("rb") as handle:
            try:
                values.update(tomllib.load(handle))
            except tomllib.TOMLDecodeError as e:
                raise ConfigError("config-file", f"{toml_path} is not valid TOML: {e}") from e
    known = {f.name: f.type for f in fields(Settings)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError("config-unknown", f"{toml_path} has unknown settings: {sorted(unknown)}")
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
    values.setdefault("database_url", "")
    if not values["database_url"]:
        values["database_url"] = f"sqlite:///{folder / 'gateway.db'}"
    if not values.get("key_file"):
        values["key_file"] = str(folder / "node-keys.json")
    return Settings(**values).check()


def write_instance_file(instance: Path, settings: dict[str, Any]) -> Path:
    """Write ``gateway.toml`` (simple scalar values only)."""
    lines = ["# Node configuration; GATEWAY_<NAME> environment variables override these."]
    for key, value in settings.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, (int, float)):
            lines.append(f"{key} = {value}")
        else:
            escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{key} = "{escaped}"')
    path = instance / INSTANCE_FILE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
