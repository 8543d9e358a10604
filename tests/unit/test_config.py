"""Settings from STREAMS_* variables and the optional streams.toml: precedence and messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.config import Settings
from streams.errors import ConfigError


def test_file_values_are_used_and_env_overrides_them(tmp_path: Path) -> None:
    (tmp_path / "streams.toml").write_text('workspace = "dev"\nweb_port = 7000\npartitions = 6\n')
    settings = Settings.from_env({"STREAMS_WEB_PORT": "7100"}, cwd=tmp_path)
    assert (settings.workspace, settings.web_port, settings.partitions) == ("dev", 7100, 6)


def test_no_file_means_defaults(tmp_path: Path) -> None:
    assert Settings.from_env({}, cwd=tmp_path) == Settings()


def test_explicit_config_path(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('kafka_bootstrap = "k1:9092,k2:9092"\n')
    assert Settings.from_env({"STREAMS_CONFIG": str(path)}, cwd=tmp_path).kafka_bootstrap == "k1:9092,k2:9092"
    with pytest.raises(ConfigError, match=r"STREAMS_CONFIG='.*missing.toml' is not a file"):
        Settings.from_env({"STREAMS_CONFIG": str(tmp_path / "missing.toml")}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("web_port = 99999\n", r"streams.toml: web_port='99999' is not a port; use a number 1-65535"),
        ('kafka_bootstrap = "nohost"\n', r"streams.toml: kafka_bootstrap='nohost' is not a host:port list"),
        ('colour = "red"\n', r"unknown key 'colour' in .*streams.toml; known keys: kafka_bootstrap"),
        ("partitions = [1]\n", r"partitions in .*streams.toml must be a string or a whole number"),
        ("partitions = \n", r"streams.toml is not valid TOML"),
    ],
)
def test_file_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "streams.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({}, cwd=tmp_path)


def test_env_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^STREAMS_PARTITIONS='x' is not a whole number"):
        Settings.from_env({"STREAMS_PARTITIONS": "x"}, cwd=tmp_path)


def test_topic_settings(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"STREAMS_REPLICATION_FACTOR": "3", "STREAMS_RETENTION_MS": "1000"}, cwd=tmp_path
    )
    assert settings.effective_min_insync_replicas == 2 and settings.retention_ms == 1000
    assert Settings().effective_min_insync_replicas == 1
    with pytest.raises(ConfigError, match="more than the replication factor 1; use a number 1-1"):
        Settings.from_env({"STREAMS_MIN_INSYNC_REPLICAS": "2"}, cwd=tmp_path)


def test_standby_replicas_are_off_unless_asked_for(tmp_path: Path) -> None:
    assert Settings.from_env({}, cwd=tmp_path).standby_replicas == 0
    assert Settings.from_env({"STREAMS_STANDBY_REPLICAS": "1"}, cwd=tmp_path).standby_replicas == 1
    with pytest.raises(ConfigError, match=r"^STREAMS_STANDBY_REPLICAS='-1' must be at least 0"):
        Settings.from_env({"STREAMS_STANDBY_REPLICAS": "-1"}, cwd=tmp_path)


def test_batch_window_is_10_ms_unless_set(tmp_path: Path) -> None:
    assert Settings.from_env({}, cwd=tmp_path).batch_window_ms == 10
    assert Settings.from_env({"STREAMS_BATCH_WINDOW_MS": "5"}, cwd=tmp_path).batch_window_ms == 5
    with pytest.raises(ConfigError, match=r"^STREAMS_BATCH_WINDOW_MS='0' must be at least 1"):
        Settings.from_env({"STREAMS_BATCH_WINDOW_MS": "0"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"^STREAMS_BATCH_WINDOW_MS='fast' is not a whole number"):
        Settings.from_env({"STREAMS_BATCH_WINDOW_MS": "fast"}, cwd=tmp_path)


def test_every_setting_read_from_the_environment_can_be_set_in_the_file() -> None:
    import inspect
    import re

    from streams import config

    read = set(re.findall(r'get\("([A-Z_]+)"\)', inspect.getsource(config.Settings.from_env)))
    assert read, "found no settings read in Settings.from_env"
    assert read - set(config.KEYS) == set()
