"""Security settings: parsing and one-line errors, secrets that never print, client configs."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import faust
import httpx
import pytest

from streams import logsafety
from streams.config import Settings
from streams.errors import ConfigError, InfraError
from streams.local import certs
from streams.local.stack import LocalStack, StackInfo
from streams.secret import Secret
from streams.security import child_env, client_config, faust_credentials, registry_client

PASSWORD = "pa55-w0rd-xyz"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> certs.LocalCA:
    return certs.ensure(tmp_path_factory.mktemp("ca"))


def _secure_env(ca: certs.LocalCA, **extra: str) -> dict[str, str]:
    return {
        "STREAMS_KAFKA_BOOTSTRAP": "127.0.0.1:9093",
        "STREAMS_SCHEMA_REGISTRY_URL": "https://127.0.0.1:8081/apis/ccompat/v7",
        "STREAMS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "STREAMS_KAFKA_SASL_USERNAME": "svc",
        "STREAMS_KAFKA_SASL_PASSWORD": PASSWORD,
        "STREAMS_KAFKA_SSL_CAFILE": str(ca.ca_file),
        "STREAMS_SCHEMA_REGISTRY_USERNAME": "svc",
        "STREAMS_SCHEMA_REGISTRY_PASSWORD": "reg-" + PASSWORD,
        **extra,
    }


def test_secrets_never_print(ca: certs.LocalCA, tmp_path: Path) -> None:
    settings = Settings.from_env(_secure_env(ca), cwd=tmp_path)
    assert settings.kafka_sasl_password == Secret(PASSWORD)
    for text in (repr(settings), str(settings), f"{settings.kafka_sasl_password}", repr(settings.__dict__)):
        assert PASSWORD not in text
    assert "**********" in repr(settings)
    # A copy for a child process keeps the value, still masked.
    copied = pickle.loads(pickle.dumps(settings.kafka_sasl_password))
    assert copied.reveal() == PASSWORD and PASSWORD not in repr(copied)


def test_client_configs_carry_the_credentials(ca: certs.LocalCA, tmp_path: Path) -> None:
    settings = Settings.from_env(_secure_env(ca, STREAMS_KAFKA_SASL_MECHANISM="scram-sha-256"), cwd=tmp_path)
    assert client_config(settings) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": "svc",
        "sasl.password": PASSWORD,
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(ca.ca_file),
    }
    creds = faust_credentials(settings)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("svc", PASSWORD, "SCRAM-SHA-256")
    assert creds.ssl_context is not None and creds.protocol.value == "SASL_SSL"
    assert PASSWORD not in repr(creds)
    client = registry_client(settings)
    try:
        auth = client._http.auth
        assert auth is not None
        assert "Authorization" in next(auth.auth_flow(httpx.Request("GET", "https://x/"))).headers
    finally:
        client.close()
    # A worker started with child_env() reads the same settings back.
    again = Settings.from_env(
        {**child_env(settings), "STREAMS_KAFKA_BOOTSTRAP": "127.0.0.1:9093"}, cwd=tmp_path
    )
    assert client_config(again) == client_config(settings)
    assert again.schema_registry_password == settings.schema_registry_password


def test_plaintext_is_the_default_and_adds_nothing(tmp_path: Path) -> None:
    settings = Settings.from_env({}, cwd=tmp_path)
    assert client_config(settings) == {} and faust_credentials(settings) is None


def test_password_file(ca: certs.LocalCA, tmp_path: Path) -> None:
    secret = tmp_path / "kafka.password"
    secret.write_text(PASSWORD + "\n")
    env = _secure_env(ca, STREAMS_KAFKA_SASL_PASSWORD="", STREAMS_KAFKA_SASL_PASSWORD_FILE=str(secret))
    assert Settings.from_env(env, cwd=tmp_path).kafka_sasl_password == Secret(PASSWORD)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"STREAMS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"},
            r"^STREAMS_KAFKA_SECURITY_PROTOCOL='SASL_PLAINTEXT' is not supported \(it would send the password unencrypted\); use PLAINTEXT or SASL_SSL$",
        ),
        (
            {"STREAMS_KAFKA_SASL_MECHANISM": "PLAIN"},
            r"^STREAMS_KAFKA_SASL_MECHANISM='PLAIN' is not supported; use SCRAM-SHA-512 or SCRAM-SHA-256$",
        ),
        (
            {"STREAMS_KAFKA_SASL_PASSWORD": ""},
            r"^STREAMS_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs STREAMS_KAFKA_SASL_PASSWORD",
        ),
        ({"STREAMS_KAFKA_SASL_USERNAME": ""}, r"needs STREAMS_KAFKA_SASL_USERNAME; set it"),
        (
            {"STREAMS_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"},
            r"^Kafka credentials are set but STREAMS_KAFKA_SECURITY_PROTOCOL is PLAINTEXT; set it to SASL_SSL",
        ),
        (
            {"STREAMS_KAFKA_SSL_CAFILE": "/no/such/ca.pem"},
            r"^STREAMS_KAFKA_SSL_CAFILE='/no/such/ca.pem' is not a file",
        ),
        (
            {"STREAMS_KAFKA_SASL_PASSWORD_FILE": "/no/such/file"},
            r"^both STREAMS_KAFKA_SASL_PASSWORD and STREAMS_KAFKA_SASL_PASSWORD_FILE are set",
        ),
        (
            {"STREAMS_SCHEMA_REGISTRY_PASSWORD": ""},
            r"^registry basic auth needs a username and a password; set STREAMS_SCHEMA_REGISTRY_PASSWORD too$",
        ),
    ],
)
def test_bad_security_settings_are_one_line_naming_the_fix(
    ca: certs.LocalCA, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Settings.from_env(_secure_env(ca, **change), cwd=tmp_path)
    assert "\n" not in str(info.value) and PASSWORD not in str(info.value)


def test_unreadable_ca_and_password_files(ca: certs.LocalCA, tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("hello\n")
    with pytest.raises(ConfigError, match=r"holds no usable CA certificate .*BEGIN CERTIFICATE"):
        Settings.from_env(_secure_env(ca, STREAMS_KAFKA_SSL_CAFILE=str(not_pem)), cwd=tmp_path)
    two_lines = tmp_path / "pw"
    two_lines.write_text("a\nb\n")
    env = _secure_env(ca, STREAMS_KAFKA_SASL_PASSWORD="", STREAMS_KAFKA_SASL_PASSWORD_FILE=str(two_lines))
    with pytest.raises(ConfigError, match=r"must hold the password on one line"):
        Settings.from_env(env, cwd=tmp_path)


def test_passwords_are_refused_in_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "streams.toml").write_text(f'kafka_sasl_password = "{PASSWORD}"\n')
    with pytest.raises(ConfigError, match=r"a password does not belong in a config file") as info:
        Settings.from_env({}, cwd=tmp_path)
    assert PASSWORD not in str(info.value)
    (tmp_path / "streams.toml").write_text(
        'kafka_sasl_username = "svc"\nkafka_security_protocol = "SASL_SSL"\n'
    )
    with pytest.raises(
        ConfigError, match=r"streams.toml: kafka_security_protocol=SASL_SSL needs STREAMS_KAFKA_SASL_PASSWORD"
    ):
        Settings.from_env({}, cwd=tmp_path)


def test_test_ca_signs_a_loopback_certificate(tmp_path: Path) -> None:
    import ssl

    from cryptography import x509

    made = certs.ensure(tmp_path)
    cert = x509.load_pem_x509_certificate(made.server_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert made.server_key.stat().st_mode & 0o077 == 0 and made.server_pem.stat().st_mode & 0o077 == 0
    # Verifies against its CA (what every client does), and is kept on a second call.
    ssl.create_default_context(cafile=str(made.ca_file))
    assert certs.ensure(tmp_path).server_cert.read_bytes() == made.server_cert.read_bytes()


def test_payload_bytes_are_masked_in_library_logs(caplog: pytest.LogCaptureFixture) -> None:
    logsafety.install()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("faust.topics").debug("send: k=%r v=%r", b"key", b"jane@example.com")
        logging.getLogger("streams.mine").debug("kept %r", b"bytes")
    assert "jane@example.com" not in caplog.text and "<16 bytes>" in caplog.text
    assert "kept b'bytes'" in caplog.text


def test_exports_of_a_secure_stack_name_password_files_only() -> None:
    info = StackInfo(
        "127.0.0.1:1", "https://127.0.0.1:2/apis/ccompat/v7", "4", "2", 1, 2, [1],
        secure=True, sasl_mechanism="SCRAM-SHA-512", kafka_username="streams",
        kafka_password_file="/s/kafka.password", registry_username="streams",
        registry_password_file="/s/registry.password", ca_file="/s/ca.pem",
    )  # fmt: skip
    lines = info.exports().splitlines()
    assert "export STREAMS_KAFKA_SASL_PASSWORD_FILE=/s/kafka.password" in lines
    assert "export STREAMS_SCHEMA_REGISTRY_PASSWORD_FILE=/s/registry.password" in lines
    assert not any("_PASSWORD=" in line for line in lines)
    plain = StackInfo("127.0.0.1:1", "http://127.0.0.1:2", "4", "2", 1, 2, [1])
    assert len(plain.exports().splitlines()) == 2


def test_a_state_directory_keeps_its_kind(tmp_path: Path) -> None:
    home = tmp_path / "local"
    home.mkdir()
    # A plaintext stack's stack.json (from before secure stacks: no "secure" key).
    (home / "stack.json").write_text(json.dumps({"ports": {"kafka": 1, "controller": 2, "registry": 3}}))
    settings = Settings.from_env({"STREAMS_STATE_DIR": str(tmp_path)}, cwd=tmp_path)
    assert LocalStack(settings).secure is False
    with pytest.raises(
        InfraError, match=r"is a plaintext one; use another STREAMS_STATE_DIR for a secure stack"
    ):
        LocalStack(settings, secure=True).up()
