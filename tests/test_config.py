"""Node configuration: the layers defaults → gateway.toml → GATEWAY_* environment →
explicit overrides, strict typing, and one stable ``config-*`` code per kind of mistake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.config import ENV_PREFIX, Settings, load_settings, write_instance_file
from gateway.errors import ConfigError

ANCHOR = "ab" * 32


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GATEWAY_* variable left in the shell must not decide these tests."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def folder_with(tmp_path: Path, text: str) -> Path:
    (tmp_path / "gateway.toml").write_text(text, encoding="utf-8")
    return tmp_path


def refused(code: str, instance: Path, **overrides: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(instance, **overrides)
    assert caught.value.code == code, caught.value.message
    assert len(caught.value.message.split()) >= 4  # a sentence, not a bare code
    return caught.value


def test_defaults_when_only_the_node_is_set(tmp_path: Path) -> None:
    settings = load_settings(folder_with(tmp_path, 'node = "KZ"\n'))
    assert settings.node == "KZ"
    assert settings.instance == str(tmp_path.resolve())
    # The embedded database and the key file live inside the instance folder.
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / 'gateway.db'}"
    assert settings.key_file == str(tmp_path.resolve() / "node-keys.json")
    assert settings.key_passphrase is None
    assert settings.trust_anchor == ""
    assert settings.max_envelope_bytes == 1024 * 1024
    assert settings.clock_skew == 120
    assert settings.peer_timeout == 10.0 and settings.dispatch_lease == 60
    assert settings.allow_insecure_http is False


def test_sqlite_default_follows_a_relative_instance_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "nodes" / "kz").mkdir(parents=True)
    folder_with(tmp_path / "nodes" / "kz", 'node = "KZ"\n')
    monkeypatch.chdir(tmp_path)
    settings = load_settings("nodes/kz")
    assert settings.database_url == f"sqlite:///{tmp_path.resolve()}/nodes/kz/gateway.db"


def test_layers_file_then_environment_then_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = folder_with(
        tmp_path,
        'node = "KZ"\nclock_skew = 30\npeer_timeout = 3.5\ndispatch_batch = 7\n'
        "allow_insecure_http = true\n",
    )
    from_file = load_settings(folder)
    assert (from_file.clock_skew, from_file.peer_timeout, from_file.dispatch_batch) == (30, 3.5, 7)
    assert from_file.allow_insecure_http is True

    monkeypatch.setenv("GATEWAY_CLOCK_SKEW", "45")
    monkeypatch.setenv("GATEWAY_PEER_TIMEOUT", "4")
    monkeypatch.setenv("GATEWAY_ALLOW_INSECURE_HTTP", "no")
    monkeypatch.setenv("GATEWAY_KEY_PASSPHRASE", "from the environment")
    from_env = load_settings(folder)
    assert from_env.clock_skew == 45 and isinstance(from_env.clock_skew, int)
    assert from_env.peer_timeout == 4.0 and isinstance(from_env.peer_timeout, float)
    assert from_env.allow_insecure_http is False
    assert from_env.key_passphrase == "from the environment"
    assert from_env.dispatch_batch == 7  # not in the environment: the file still counts

    overridden = load_settings(folder, clock_skew=5, dispatch_batch=None)
    assert overridden.clock_skew == 5
    assert overridden.dispatch_batch == 7  # None means "not overridden"


def test_environment_alone_can_name_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_NODE", "KG-MVD")
    assert load_settings(tmp_path).node == "KG-MVD"


def test_explicit_database_url_and_key_file_are_kept(tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path,
        'node = "KZ"\ndatabase_url = "postgresql://gw@db.example/kz"\n'
        'key_file = "/etc/xb1/keys.json"\n',
    )
    settings = load_settings(folder)
    assert settings.database_url == "postgresql://gw@db.example/kz"
    assert settings.key_file == "/etc/xb1/keys.json"


def test_write_instance_file_round_trips(tmp_path: Path) -> None:
    written = {
        "node": "UZ",
        "trust_anchor": ANCHOR,
        "backoff_base": 0.25,
        "dispatch_lease": 30,
        "allow_insecure_http": True,
        "database_url": 'sqlite:////srv/C:\\odd "path"\\gw.db',
    }
    write_instance_file(tmp_path, written)
    settings = load_settings(tmp_path)
    for name, value in written.items():
        assert getattr(settings, name) == value


def test_missing_node_id(tmp_path: Path) -> None:
    error = refused("config-node", tmp_path)
    assert "GATEWAY_NODE" in error.message


@pytest.mark.parametrize("node", ["kz", "KAZ", "K", "KZ-", "KZ_MVD", "KZ-mvd", ""])
def test_bad_node_id(tmp_path: Path, node: str) -> None:
    error = refused("config-node", folder_with(tmp_path, f'node = "{node}"\n'))
    assert "KZ-MVD" in error.message


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ('clock_skew = "soon"', "clock_skew"),
        ("clock_skew = 1.5", "clock_skew"),  # not silently truncated to 1
        ("max_envelope_bytes = true", "max_envelope_bytes"),  # a bool is not a size
        ('peer_timeout = "fast"', "peer_timeout"),
        ("peer_timeout = true", "peer_timeout"),
        ('peer_timeout = "nan"', "peer_timeout"),
        ('dispatch_interval = "inf"', "dispatch_interval"),
        ('allow_insecure_http = "maybe"', "allow_insecure_http"),
        ("allow_insecure_http = 1", "allow_insecure_http"),
        ("database_url = 5", "database_url"),
        ("trust_anchor = [1, 2]", "trust_anchor"),
        ("dispatch_batch = 0", "dispatch_batch"),
        ("max_envelope_bytes = -1", "max_envelope_bytes"),
        ("peer_timeout = 0", "peer_timeout"),
        ("clock_skew = -5", "clock_skew"),
    ],
)
def test_value_of_the_wrong_type_or_range(tmp_path: Path, line: str, name: str) -> None:
    error = refused("config-value", folder_with(tmp_path, f'node = "KZ"\n{line}\n'))
    assert name in error.message


@pytest.mark.parametrize(
    "line", ["key_passphrase = 734921158", 'key_passphrase = ["correct horse", "battery"]']
)
def test_a_passphrase_of_the_wrong_type_is_refused_without_being_written(
    tmp_path: Path, line: str
) -> None:
    """Errors go to logs: a passphrase written without quotes is still the passphrase."""
    error = refused("config-value", folder_with(tmp_path, f'node = "KZ"\n{line}\n'))
    assert "key_passphrase" in error.message and "not shown: it is secret" in error.message
    assert "734921158" not in error.message and "horse" not in error.message


def test_a_database_url_that_does_not_parse_is_quoted_without_its_password(
    tmp_path: Path,
) -> None:
    line = 'database_url = "postgresql://gw:S3cretPw@db:54x2/gw"'
    error = refused("config-database", folder_with(tmp_path, f'node = "KZ"\n{line}\n'))
    assert "S3cretPw" not in error.message
    assert "postgresql://gw:***@db:54x2/gw" in error.message


def test_node_id_of_the_wrong_type_is_a_config_error(tmp_path: Path) -> None:
    refused("config-value", folder_with(tmp_path, "node = 7\n"))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEWAY_MAX_TTL", "a month"),
        ("GATEWAY_DISPATCH_LEASE", "60s"),
        ("GATEWAY_BACKOFF_CAP", "ten"),
        ("GATEWAY_ALLOW_INSECURE_HTTP", "2"),
    ],
)
def test_environment_value_that_is_not_of_the_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    error = refused("config-value", folder_with(tmp_path, 'node = "KZ"\n'))
    assert variable in error.message and repr(value) in error.message


def test_unknown_toml_key(tmp_path: Path) -> None:
    error = refused("config-unknown", folder_with(tmp_path, 'node = "KZ"\npeer_timout = 3\n'))
    assert "peer_timout" in error.message and "peer_timeout" in error.message


def test_a_toml_table_is_an_unknown_key(tmp_path: Path) -> None:
    refused("config-unknown", folder_with(tmp_path, 'node = "KZ"\n[server]\nbind = "x"\n'))


def test_instance_cannot_be_set_inside_the_instance_file(tmp_path: Path) -> None:
    refused("config-unknown", folder_with(tmp_path, 'node = "KZ"\ninstance = "/elsewhere"\n'))


def test_unknown_override(tmp_path: Path) -> None:
    refused("config-unknown", folder_with(tmp_path, 'node = "KZ"\n'), peer_timout=3)


@pytest.mark.parametrize(
    "text",
    ['node = "KZ', "node = KZ\n", 'node = "KZ"\nnode = "KG"\n', "= 1\n", 'node = "\udcff"'],
)
def test_bad_toml(tmp_path: Path, text: str) -> None:
    (tmp_path / "gateway.toml").write_bytes(text.encode("utf-8", "surrogateescape"))
    error = refused("config-file", tmp_path)
    assert "gateway.toml" in error.message


def test_unreadable_instance_file(tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").mkdir()
    refused("config-file", tmp_path)


@pytest.mark.parametrize(("timeout", "lease"), [("30", "60"), ("31", "60"), ("2.5", "5")])
def test_lease_must_exceed_twice_the_peer_timeout(tmp_path: Path, timeout: str, lease: str) -> None:
    folder = folder_with(
        tmp_path, f'node = "KZ"\npeer_timeout = {timeout}\ndispatch_lease = {lease}\n'
    )
    error = refused("config-lease", folder)
    assert "dispatch_lease" in error.message and "peer_timeout" in error.message


def test_lease_just_above_twice_the_timeout_is_accepted(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, 'node = "KZ"\npeer_timeout = 29.5\ndispatch_lease = 60\n')
    assert load_settings(folder).dispatch_lease == 60


def test_lease_rule_applies_to_environment_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_DISPATCH_LEASE", "10")
    refused("config-lease", folder_with(tmp_path, 'node = "KZ"\n'))


def test_message_ttl_above_max_ttl(tmp_path: Path) -> None:
    refused("config-ttl", folder_with(tmp_path, 'node = "KZ"\nmax_ttl = 60\nmessage_ttl = 61\n'))


@pytest.mark.parametrize("anchor", ["abc", "g" * 64, "ab" * 33, "ab" * 31 + "a", "0x" + "a" * 62])
def test_bad_anchor(tmp_path: Path, anchor: str) -> None:
    error = refused(
        "config-anchor", folder_with(tmp_path, f'node = "KZ"\ntrust_anchor = "{anchor}"')
    )
    assert "64-hex-digit SHA-256" in error.message


def test_anchor_in_capitals_is_normalised(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, f'node = "KZ"\ntrust_anchor = "{ANCHOR.upper()}"\n')
    assert load_settings(folder).trust_anchor == ANCHOR


@pytest.mark.parametrize(
    "url", ["not a url", "mysql://gw@db/kz", "://nothing", "oracle+cx://gw@db/kz"]
)
def test_unsupported_database_url(tmp_path: Path, url: str) -> None:
    refused("config-database", folder_with(tmp_path, f'node = "KZ"\ndatabase_url = "{url}"\n'))


def test_sqlite_commits_are_synced_to_disk_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = folder_with(tmp_path, 'node = "KZ"\n')
    assert load_settings(folder).sqlite_synchronous == "full"
    monkeypatch.setenv("GATEWAY_SQLITE_SYNCHRONOUS", " Normal ")
    assert load_settings(folder).sqlite_synchronous == "normal"


@pytest.mark.parametrize("level", ["off", "extra", "1", ""])
def test_a_sqlite_synchronous_level_other_than_full_or_normal_is_refused(
    tmp_path: Path, level: str
) -> None:
    folder = folder_with(tmp_path, f'node = "KZ"\nsqlite_synchronous = "{level}"\n')
    error = refused("config-synchronous", folder)
    assert "power loss" in error.message
    with pytest.raises(ConfigError) as caught:
        write_instance_file(tmp_path / "new", {"node": "KZ", "sqlite_synchronous": level})
    assert caught.value.code == "config-synchronous"


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(folder_with(tmp_path, 'node = "KZ"\n'))
    with pytest.raises(AttributeError):
        settings.node = "KG"  # type: ignore[misc]
    assert isinstance(settings, Settings)
