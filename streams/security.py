"""How every client streams builds connects securely: one place turns `Settings` into
the Kafka and registry credentials of each client library.

- `client_config(settings)`: the librdkafka (confluent-kafka) entries - `security.protocol`,
  `sasl.mechanisms`, `sasl.username`, `sasl.password`, `ssl.ca.location` - merged into the
  config of every Producer, Consumer and AdminClient (empty for PLAINTEXT).
- `faust_credentials(settings)`: the same for faust's aiokafka clients (`broker_credentials`).
- `registry_client(settings)`: a `SchemaRegistryClient` with basic auth and the registry's CA.

Secrets leave their `Secret` wrapper only here, on their way into a client library.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from streams.config import SECURITY_KEYS, Settings
from streams.schema_registry import DEFAULT_TIMEOUT_S, SchemaRegistryClient

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT


def client_config(settings: Settings) -> dict[str, Any]:
    """librdkafka settings for `settings`' Kafka security; {} for PLAINTEXT."""
    if not settings.kafka_sasl:
        return {}
    assert settings.kafka_sasl_username and settings.kafka_sasl_password  # checked by Settings
    config: dict[str, Any] = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": settings.kafka_sasl_mechanism,
        "sasl.username": settings.kafka_sasl_username,
        "sasl.password": settings.kafka_sasl_password.reveal(),
        # librdkafka's default, made explicit: the broker's certificate must name its host.
        "ssl.endpoint.identification.algorithm": "https",
    }
    if settings.kafka_ssl_cafile is not None:
        config["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
    return config


def ssl_context(cafile: str | None) -> ssl.SSLContext:
    """A verifying client TLS context trusting `cafile` (or the system's CAs)."""
    return ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cafile=cafile)


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """faust's `broker_credentials` for `settings`; None for PLAINTEXT."""
    if not settings.kafka_sasl:
        return None
    # Imported here: the CLI's short commands never load faust.
    import faust

    assert settings.kafka_sasl_username and settings.kafka_sasl_password
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.reveal(),
        ssl_context=ssl_context(cafile),
        mechanism=settings.kafka_sasl_mechanism,
    )


def registry_client(
    settings: Settings, *, url: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> SchemaRegistryClient:
    """A registry client for `settings` (or `url`), with its credentials and CA."""
    password = settings.schema_registry_password
    return SchemaRegistryClient(
        url or settings.require_registry(),
        username=settings.schema_registry_username,
        password=password.reveal() if password is not None else None,
        timeout_s=timeout_s,
        verify=ssl_context(str(settings.schema_registry_cafile)) if settings.schema_registry_cafile else True,
    )


def child_env(settings: Settings) -> dict[str, str]:
    """Every security `STREAMS_*` variable for a child process (a worker) with these credentials.

    Unused ones are set empty (= unset), so whatever the parent's environment holds, say a
    `*_PASSWORD_FILE` next to these `*_PASSWORD`s, cannot contradict them.
    """
    env = {f"STREAMS_{key}": "" for key in SECURITY_KEYS}
    env["STREAMS_KAFKA_SECURITY_PROTOCOL"] = settings.kafka_security_protocol
    if settings.kafka_sasl:
        assert settings.kafka_sasl_username and settings.kafka_sasl_password
        env["STREAMS_KAFKA_SASL_MECHANISM"] = settings.kafka_sasl_mechanism
        env["STREAMS_KAFKA_SASL_USERNAME"] = settings.kafka_sasl_username
        env["STREAMS_KAFKA_SASL_PASSWORD"] = settings.kafka_sasl_password.reveal()
        if settings.kafka_ssl_cafile is not None:
            env["STREAMS_KAFKA_SSL_CAFILE"] = str(settings.kafka_ssl_cafile)
    if settings.schema_registry_username and settings.schema_registry_password:
        env["STREAMS_SCHEMA_REGISTRY_USERNAME"] = settings.schema_registry_username
        env["STREAMS_SCHEMA_REGISTRY_PASSWORD"] = settings.schema_registry_password.reveal()
    if settings.schema_registry_cafile is not None:
        env["STREAMS_SCHEMA_REGISTRY_CAFILE"] = str(settings.schema_registry_cafile)
    return env
