"""Apicurio Registry (Confluent-compatible API under /apis/ccompat/v7), file-backed H2 storage.

In the secure stack (`RegistrySpec.security`) it serves HTTPS only, with the test CA's
certificate, and requires HTTP basic auth: Apicurio's "client credentials basic auth",
which checks `username:password` as a client ID and secret at the auth server
(`streams.local.auth`) and caches the token it gets for a few minutes.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx

from streams.local.artifacts import Artifacts
from streams.local.auth import REALM, REGISTRY_API_CLIENT
from streams.secret import Secret
from streams.security import ssl_context

CCOMPAT_PATH = "/apis/ccompat/v7"


@dataclass(frozen=True)
class RegistrySecurity:
    """TLS and basic auth for the registry."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    #: The auth server's base URL (http://127.0.0.1:port).
    auth_url: str


@dataclass(frozen=True)
class RegistrySpec:
    """Where the registry keeps its database and which port it serves."""

    home: Path
    port: int
    heap_mb: int
    security: RegistrySecurity | None = None

    @property
    def marker(self) -> str:
        return f"-Dstreams.local.registry={self.home.resolve()}"

    @property
    def url(self) -> str:
        scheme = "https" if self.security else "http"
        return f"{scheme}://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    @property
    def pidfile(self) -> Path:
        return self.home / "registry.pid"

    @property
    def logfile(self) -> Path:
        return self.home / "registry.out"


def command(spec: RegistrySpec, artifacts: Artifacts) -> tuple[list[str], dict[str, str]]:
    """The registry's command line and environment."""
    spec.home.mkdir(parents=True, exist_ok=True)
    db = (spec.home / "db" / "registry").resolve()
    env = dict(os.environ)
    # A file-backed H2 database keeps schema IDs stable across restarts, matching the
    # records already in the broker's logs.
    env["REGISTRY_DATASOURCE_URL"] = f"jdbc:h2:file:{db}"
    http = [f"-Dquarkus.http.port={spec.port}"]
    sec = spec.security
    if sec is not None:
        env.update(
            {
                "AUTH_ENABLED": "true",
                "CLIENT_CREDENTIALS_BASIC_AUTH_ENABLED": "true",
                "KEYCLOAK_URL": sec.auth_url,
                "KEYCLOAK_REALM": REALM,
                "KEYCLOAK_API_CLIENT_ID": REGISTRY_API_CLIENT,
                # Every call authenticated, reads included.
                "REGISTRY_AUTH_ANONYMOUS_READS_ENABLED": "false",
            }
        )
        http = [
            f"-Dquarkus.http.ssl-port={spec.port}",
            f"-Dquarkus.http.ssl.certificate.files={sec.cert_file.resolve()}",
            f"-Dquarkus.http.ssl.certificate.key-files={sec.key_file.resolve()}",
            # HTTPS only: basic auth never crosses the wire in clear.
            "-Dquarkus.http.insecure-requests=disabled",
        ]
    argv = [
        "java",
        f"-Xmx{spec.heap_mb}m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        spec.marker,
        *http,
        "-Dquarkus.http.host=127.0.0.1",
        "-Dquarkus.log.console.level=WARN",
        "-Dquarkus.log.file.enable=true",
        f"-Dquarkus.log.file.path={(spec.home / 'registry.log').resolve()}",
        "-jar",
        str(artifacts.registry_runner),
    ]
    return argv, env


def answers(
    url: str,
    timeout_s: float = 1.0,
    *,
    username: str | None = None,
    password: Secret | None = None,
    ca_file: Path | None = None,
) -> bool:
    """True if a Confluent-compatible registry answers at `url` (with these credentials)."""
    auth = httpx.BasicAuth(username, password.reveal()) if username and password else None
    verify: ssl.SSLContext | bool = ssl_context(str(ca_file)) if ca_file is not None else True
    try:
        response = httpx.get(f"{url}/subjects", timeout=timeout_s, auth=auth, verify=verify)
    except httpx.HTTPError:
        return False
    return response.status_code == 200
