"""Settings: every `STREAMS_*` environment variable, parsed and validated in one place.

Values may also come from an optional TOML config file: `$STREAMS_CONFIG`, else
`streams.toml` in the working directory if it exists. Its keys are the variable names
without the prefix, in lower case (`kafka_bootstrap = "127.0.0.1:9092"`); an
environment variable overrides the file. A wrong value raises `ConfigError` naming the
variable (or the file and key) and the accepted form, so the CLI can print one line
instead of a traceback.

Credentials (`*_PASSWORD`, or `*_PASSWORD_FILE` naming a file that holds one) are kept as
`Secret`s, so printing or logging a `Settings` never shows them, and they are refused in
the config file: a file is easily committed or copied, the environment is not.
"""

from __future__ import annotations

import os
import re
import ssl
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streams.errors import ConfigError
from streams.secret import Secret

ENV_PREFIX = "STREAMS_"
CONFIG_ENV = "STREAMS_CONFIG"
CONFIG_FILE = "streams.toml"

#: Every key a config file may hold (the env var names without the prefix).
KEYS = (
    "KAFKA_BOOTSTRAP",
    "SCHEMA_REGISTRY_URL",
    "STATE_DIR",
    "WORKSPACE",
    "LOCAL_KAFKA_PORT",
    "LOCAL_REGISTRY_PORT",
    "LOCAL_KAFKA_HEAP_MB",
    "LOCAL_REGISTRY_HEAP_MB",
    "PARTNER_URL",
    "WEB_HOST",
    "WEB_PORT",
    "PARTITIONS",
    "REPLICATION_FACTOR",
    "MIN_INSYNC_REPLICAS",
    "RETENTION_MS",
    "APP",
    "SCHEMAS_DIR",
    "MAX_EVENT_BYTES",
    "STATUS_TOPIC",
    "DURABILITY",
    "WATCHDOG_S",
    "BATCH_WINDOW_MS",
    "STANDBY_REPLICAS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SASL_PASSWORD_FILE",
    "KAFKA_SSL_CAFILE",
    "SCHEMA_REGISTRY_USERNAME",
    "SCHEMA_REGISTRY_PASSWORD",
    "SCHEMA_REGISTRY_PASSWORD_FILE",
    "SCHEMA_REGISTRY_CAFILE",
)

#: The keys saying how to authenticate to Kafka and the registry.
SECURITY_KEYS = tuple(
    k for k in KEYS if k.startswith(("KAFKA_S", "SCHEMA_REGISTRY_")) and k != "SCHEMA_REGISTRY_URL"
)
#: Keys whose value is a credential: accepted from the environment only.
SECRET_KEYS = ("KAFKA_SASL_PASSWORD", "SCHEMA_REGISTRY_PASSWORD")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")

_HOSTPORT = re.compile(r"^\[?[A-Za-z0-9_.:-]+\]?:(\d{1,5})$")
_WORKSPACE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _parse_bootstrap(name: str, raw: str) -> str:
    servers = [s.strip() for s in raw.split(",") if s.strip()]
    if not servers:
        raise ConfigError(f"{name} is empty; set it to host:port[,host:port...]")
    for server in servers:
        match = _HOSTPORT.match(server)
        if not match or not 0 < int(match.group(1)) < 65536:
            raise ConfigError(f"{name}={raw!r} is not a host:port list; set it like 127.0.0.1:9092")
    return ",".join(servers)


def _parse_url(name: str, raw: str) -> str:
    if not re.match(r"^https?://[^/\s]+", raw):
        raise ConfigError(f"{name}={raw!r} is not an http(s) URL; set it like http://127.0.0.1:8081")
    return raw.rstrip("/")


def _parse_workspace(name: str, raw: str) -> str:
    if raw and not _WORKSPACE.match(raw):
        raise ConfigError(
            f"{name}={raw!r} is not a workspace name; use lowercase letters, digits, '-' or '_'"
        )
    return raw


def _parse_port(name: str, raw: str) -> int:
    if not raw.isdigit() or not 0 <= int(raw) < 65536:
        raise ConfigError(f"{name}={raw!r} is not a port; use a number 1-65535 (0 = pick a free one)")
    return int(raw)


def _parse_int(name: str, raw: str, minimum: int = 1) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _parse_cafile(name: str, raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{name}={raw!r} is not a file; point it at the PEM file of the CA that signed the server's certificate"
        )
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(
            f"{name}={raw!r} holds no usable CA certificate ({type(exc).__name__}); use a PEM file with a BEGIN CERTIFICATE block"
        ) from None
    return path


def _read_secret(name: str, raw: str) -> Secret:
    """The content of the password file `raw` (one trailing newline dropped)."""
    path = Path(raw).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{name}={raw!r} cannot be read ({type(exc).__name__}); point it at a file holding only the password"
        ) from None
    value = text[:-1] if text.endswith("\n") else text
    if not value or "\n" in value:
        raise ConfigError(
            f"{name}={raw!r} must hold the password on one line (it is empty or has several lines)"
        )
    return Secret(value)


def _load_file(env: Mapping[str, str], cwd: Path | None) -> tuple[dict[str, str], str]:
    """The config file's values as strings (validated later by the same parsers)."""
    explicit = env.get(CONFIG_ENV)
    if explicit is not None and explicit.strip():
        path = Path(explicit.strip()).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"{CONFIG_ENV}={explicit!r} is not a file; point it at a streams.toml or unset it"
            )
    else:
        path = (cwd or Path.cwd()) / CONFIG_FILE
        if not path.is_file():
            return {}, ""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid TOML ({exc}); fix it or unset {CONFIG_ENV}"
        ) from None
    values: dict[str, str] = {}
    for key, value in data.items():
        upper = key.upper()
        if upper not in KEYS:
            raise ConfigError(
                f"unknown key {key!r} in {path}; known keys: {', '.join(k.lower() for k in KEYS)}"
            )
        if upper in SECRET_KEYS:
            raise ConfigError(
                f"{key} in {path}: a password does not belong in a config file; "
                f"set {ENV_PREFIX}{upper} or {key}_file (a file only you can read) instead"
            )
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ConfigError(
                f"{key} in {path} must be a string or a whole number, not {type(value).__name__}"
            )
        values[upper] = str(value).strip()
    return values, str(path)


@dataclass(frozen=True)
class Settings:
    """Resolved configuration of one streams process."""

    kafka_bootstrap: str | None = None
    schema_registry_url: str | None = None
    state_dir: Path = field(default_factory=lambda: Path(".streams"))
    workspace: str = ""
    local_kafka_port: int = 0
    local_registry_port: int = 0
    local_kafka_heap_mb: int = 512
    local_registry_heap_mb: int = 384
    partner_url: str | None = None
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    partitions: int = 3
    replication_factor: int = 1
    #: Copies of each ledger partition other workers keep warm from the changelog (faust's
    #: standby tables). Off by default: with standbys, a worker taking over a partition
    #: sometimes lacked ledger entries its standby claimed to hold, and ran duplicates of
    #: completed events again (README "Reliability"). Without, it recovers from the changelog.
    standby_replicas: int = 0
    app: str = "streams.examples:app"
    schemas_dir: Path = field(default_factory=lambda: Path("schemas"))
    max_event_bytes: int = 16 * 1024
    status_topic: str = "streams.status"
    #: A partition not moving for this long is reported stuck (and healed where safe).
    watchdog_s: float = 30.0
    #: How long an event handler's batch waits to fill (up to 500 records) before it runs.
    #: A record waits at most this long before processing starts. At half the maximum rate
    #: p99 was 45-48 ms with 10 ms, 59-70 ms with 20 ms, 113 ms with 50 ms, for 3-6 % more
    #: CPU per event than 50 ms (README "Performance"). Batch handlers set `max_wait_s`.
    batch_window_ms: int = 10
    #: "safe" (default): acks=all and outcomes acknowledged before offsets commit.
    #: "unsafe": acks=1, outcomes not awaited - only to price durability in bench/.
    durability: str = "safe"
    #: `min.insync.replicas` of created topics; None = min(2, replication factor).
    min_insync_replicas: int | None = None
    #: `retention.ms` of created non-compacted topics (default 7 days).
    retention_ms: int = 7 * 24 * 3600 * 1000
    #: How clients reach Kafka: PLAINTEXT, or SASL_SSL (SCRAM over TLS); see streams.security.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: Secret | None = None
    #: The CA that signed the brokers' certificates; None = the system's trust store.
    kafka_ssl_cafile: Path | None = None
    #: HTTP basic auth for the registry (both or neither).
    schema_registry_username: str | None = None
    schema_registry_password: Secret | None = None
    #: The CA of an https registry; None = the system's trust store.
    schema_registry_cafile: Path | None = None

    @property
    def effective_min_insync_replicas(self) -> int:
        if self.min_insync_replicas is not None:
            return self.min_insync_replicas
        return min(2, self.replication_factor)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, cwd: Path | None = None) -> Settings:
        env = os.environ if environ is None else environ
        file_values, file_name = _load_file(env, cwd)
        # The name a message uses for a key: the variable, or where in the file it is.
        names: dict[str, str] = {}

        def get(key: str) -> str | None:
            value = env.get(ENV_PREFIX + key)
            if value is not None:
                names[key] = ENV_PREFIX + key
                return value.strip()
            if key in file_values:
                names[key] = f"{file_name}: {key.lower()}"
                return file_values[key]
            return None

        def n(key: str) -> str:
            return names.get(key, ENV_PREFIX + key)

        kwargs: dict[str, object] = {}
        if (raw := get("KAFKA_BOOTSTRAP")) is not None:
            kwargs["kafka_bootstrap"] = _parse_bootstrap(n("KAFKA_BOOTSTRAP"), raw)
        if (raw := get("SCHEMA_REGISTRY_URL")) is not None:
            kwargs["schema_registry_url"] = _parse_url(n("SCHEMA_REGISTRY_URL"), raw)
        if (raw := get("STATE_DIR")) is not None:
            if not raw:
                raise ConfigError(f"{n('STATE_DIR')} is empty; set it to a writable directory")
            kwargs["state_dir"] = Path(raw).expanduser()
        if (raw := get("WORKSPACE")) is not None:
            kwargs["workspace"] = _parse_workspace(n("WORKSPACE"), raw)
        if (raw := get("LOCAL_KAFKA_PORT")) is not None:
            kwargs["local_kafka_port"] = _parse_port(n("LOCAL_KAFKA_PORT"), raw)
        if (raw := get("LOCAL_REGISTRY_PORT")) is not None:
            kwargs["local_registry_port"] = _parse_port(n("LOCAL_REGISTRY_PORT"), raw)
        if (raw := get("LOCAL_KAFKA_HEAP_MB")) is not None:
            kwargs["local_kafka_heap_mb"] = _parse_int(n("LOCAL_KAFKA_HEAP_MB"), raw, 128)
        if (raw := get("LOCAL_REGISTRY_HEAP_MB")) is not None:
            kwargs["local_registry_heap_mb"] = _parse_int(n("LOCAL_REGISTRY_HEAP_MB"), raw, 128)
        if (raw := get("PARTNER_URL")) is not None:
            kwargs["partner_url"] = _parse_url(n("PARTNER_URL"), raw)
        if (raw := get("WEB_HOST")) is not None:
            kwargs["web_host"] = raw or "127.0.0.1"
        if (raw := get("WEB_PORT")) is not None:
            kwargs["web_port"] = _parse_port(n("WEB_PORT"), raw)
        if (raw := get("PARTITIONS")) is not None:
            kwargs["partitions"] = _parse_int(n("PARTITIONS"), raw, 1)
        if (raw := get("REPLICATION_FACTOR")) is not None:
            kwargs["replication_factor"] = _parse_int(n("REPLICATION_FACTOR"), raw, 1)
        if (raw := get("STANDBY_REPLICAS")) is not None:
            kwargs["standby_replicas"] = _parse_int(n("STANDBY_REPLICAS"), raw, 0)
        if (raw := get("APP")) is not None:
            if not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", raw):
                raise ConfigError(
                    f"{n('APP')}={raw!r} is not module:attribute; set it like mypkg.handlers:app"
                )
            kwargs["app"] = raw
        if (raw := get("SCHEMAS_DIR")) is not None:
            kwargs["schemas_dir"] = Path(raw).expanduser()
        if (raw := get("WATCHDOG_S")) is not None:
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if value <= 0:
                raise ConfigError(f"{n('WATCHDOG_S')}={raw!r} must be a positive number of seconds")
            kwargs["watchdog_s"] = value
        if (raw := get("BATCH_WINDOW_MS")) is not None:
            kwargs["batch_window_ms"] = _parse_int(n("BATCH_WINDOW_MS"), raw, 1)
        if (raw := get("STATUS_TOPIC")) is not None:
            if not re.match(r"^[A-Za-z0-9._-]{1,200}$", raw):
                raise ConfigError(
                    f"{n('STATUS_TOPIC')}={raw!r} is not a topic name; use letters, digits, '.', '_', '-'"
                )
            kwargs["status_topic"] = raw
        if (raw := get("DURABILITY")) is not None:
            if raw not in ("safe", "unsafe"):
                raise ConfigError(
                    f"{n('DURABILITY')}={raw!r}: use safe (default) or unsafe (benchmarks only)"
                )
            kwargs["durability"] = raw
        if (raw := get("MAX_EVENT_BYTES")) is not None:
            kwargs["max_event_bytes"] = _parse_int(n("MAX_EVENT_BYTES"), raw, 64)
        if (raw := get("RETENTION_MS")) is not None:
            kwargs["retention_ms"] = _parse_int(n("RETENTION_MS"), raw, -1)
        kwargs.update(_security(get, n))
        rf = kwargs.get("replication_factor", 1)
        assert isinstance(rf, int)
        if (raw := get("MIN_INSYNC_REPLICAS")) is not None:
            isr = _parse_int(n("MIN_INSYNC_REPLICAS"), raw, 1)
            if isr > rf:
                raise ConfigError(
                    f"{n('MIN_INSYNC_REPLICAS')}={raw!r} is more than the replication factor {rf}; "
                    f"use a number 1-{rf}"
                )
            kwargs["min_insync_replicas"] = isr
        return cls(**kwargs)  # type: ignore[arg-type]

    @property
    def kafka_sasl(self) -> bool:
        return self.kafka_security_protocol == "SASL_SSL"

    def require_kafka(self) -> str:
        if not self.kafka_bootstrap:
            raise ConfigError(
                'STREAMS_KAFKA_BOOTSTRAP is not set; run `eval "$(streams local up --quiet)"` or set it to host:port'
            )
        return self.kafka_bootstrap

    def require_registry(self) -> str:
        if not self.schema_registry_url:
            raise ConfigError(
                'STREAMS_SCHEMA_REGISTRY_URL is not set; run `eval "$(streams local up --quiet)"` or set it to the registry URL'
            )
        return self.schema_registry_url

    def topic(self, name: str) -> str:
        """The real name of topic `name` in this process's workspace."""
        return f"{self.workspace}.{name}" if self.workspace else name


def _password(get: Callable[[str], str | None], n: Callable[[str], str], key: str) -> Secret | None:
    """`KEY` or `KEY_FILE` (not both): the password as a Secret, or None if neither is set."""
    direct, from_file = get(key), get(key + "_FILE")
    if direct and from_file:
        raise ConfigError(f"both {n(key)} and {n(key + '_FILE')} are set; keep one of them")
    if from_file:
        return _read_secret(n(key + "_FILE"), from_file)
    return Secret(direct) if direct else None


def _security(get: Callable[[str], str | None], n: Callable[[str], str]) -> dict[str, object]:
    """The Kafka and registry credentials, checked for consistency."""
    out: dict[str, object] = {}
    protocol = (get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
    if protocol not in SECURITY_PROTOCOLS:
        hint = " (it would send the password unencrypted)" if protocol == "SASL_PLAINTEXT" else ""
        raise ConfigError(
            f"{n('KAFKA_SECURITY_PROTOCOL')}={protocol!r} is not supported{hint}; use PLAINTEXT or SASL_SSL"
        )
    out["kafka_security_protocol"] = protocol
    if (raw := get("KAFKA_SASL_MECHANISM")) is not None and raw:
        mechanism = raw.upper()
        if mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"{n('KAFKA_SASL_MECHANISM')}={raw!r} is not supported; use SCRAM-SHA-512 or SCRAM-SHA-256"
            )
        out["kafka_sasl_mechanism"] = mechanism
    username = get("KAFKA_SASL_USERNAME") or None
    password = _password(get, n, "KAFKA_SASL_PASSWORD")
    if (raw := get("KAFKA_SSL_CAFILE")) is not None and raw:
        out["kafka_ssl_cafile"] = _parse_cafile(n("KAFKA_SSL_CAFILE"), raw)
    if protocol == "SASL_SSL":
        if not username or not password:
            missing = n("KAFKA_SASL_USERNAME") if not username else n("KAFKA_SASL_PASSWORD")
            raise ConfigError(
                f"{n('KAFKA_SECURITY_PROTOCOL')}=SASL_SSL needs {missing}; set it "
                "(`streams local up --secure` prints the lines for the local stack)"
            )
    elif username or password or "kafka_ssl_cafile" in out:
        raise ConfigError(
            f"Kafka credentials are set but {n('KAFKA_SECURITY_PROTOCOL')} is {protocol}; "
            "set it to SASL_SSL, or unset the STREAMS_KAFKA_SASL_* / STREAMS_KAFKA_SSL_CAFILE variables"
        )
    out["kafka_sasl_username"] = username
    out["kafka_sasl_password"] = password

    registry_user = get("SCHEMA_REGISTRY_USERNAME") or None
    registry_password = _password(get, n, "SCHEMA_REGISTRY_PASSWORD")
    if bool(registry_user) != bool(registry_password):
        missing = n("SCHEMA_REGISTRY_PASSWORD") if registry_user else n("SCHEMA_REGISTRY_USERNAME")
        raise ConfigError(f"registry basic auth needs a username and a password; set {missing} too")
    out["schema_registry_username"] = registry_user
    out["schema_registry_password"] = registry_password
    if (raw := get("SCHEMA_REGISTRY_CAFILE")) is not None and raw:
        out["schema_registry_cafile"] = _parse_cafile(n("SCHEMA_REGISTRY_CAFILE"), raw)
    return out
