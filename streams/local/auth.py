"""The secure stack's auth server: Keycloak on loopback, holding the registry's clients.

Apicurio Registry 2.x accepts HTTP basic auth only as "client credentials basic auth":
it exchanges `username:password` for a token at an OIDC server, where the username is a
client ID and the password that client's secret. This module runs that server: one
realm (`streams`) with the client the registry validates tokens for (`registry-api`) and
one client per registry user, imported at first start from a realm file.

Keycloak runs from the shared, built distribution (see `artifacts.resolve_auth_server`)
with a home directory of its own under the stack (`data/`: its H2 database and the realm
file; the rest linked to the distribution), in production mode (`start --optimized`,
no re-augmentation), HTTP on 127.0.0.1 only: the registry is its one client.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from streams.local.artifacts import AuthServer, keycloak_jvm_args
from streams.local.broker import java_executable
from streams.secret import Secret

REALM = "streams"
#: The client ID the registry checks tokens for (its `KEYCLOAK_API_CLIENT_ID`).
REGISTRY_API_CLIENT = "registry-api"


@dataclass(frozen=True)
class AuthSpec:
    """Where the auth server keeps its database and which port it serves."""

    home: Path
    port: int
    heap_mb: int = 384

    @property
    def marker(self) -> str:
        return f"-Dstreams.local.auth={self.home.resolve()}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def realm_url(self) -> str:
        return f"{self.url}/realms/{REALM}"

    @property
    def pidfile(self) -> Path:
        return self.home / "auth.pid"

    @property
    def logfile(self) -> Path:
        return self.home / "auth.out"


def _realm(clients: Sequence[tuple[str, Secret]]) -> dict[str, object]:
    service_clients = [
        {
            "clientId": client_id,
            "enabled": True,
            "publicClient": False,
            "clientAuthenticatorType": "client-secret",
            "secret": secret.reveal(),
            # Only the client-credentials grant: the registry trades basic auth for a token.
            "serviceAccountsEnabled": True,
            "standardFlowEnabled": False,
            "directAccessGrantsEnabled": False,
            "implicitFlowEnabled": False,
        }
        for client_id, secret in clients
    ]
    return {
        "realm": REALM,
        "enabled": True,
        "clients": [
            {
                "clientId": REGISTRY_API_CLIENT,
                "enabled": True,
                "publicClient": False,
                "bearerOnly": False,
                "serviceAccountsEnabled": False,
                "standardFlowEnabled": False,
                "directAccessGrantsEnabled": False,
            },
            *service_clients,
        ],
    }


def _link_distribution(spec: AuthSpec, server: AuthServer) -> Path:
    """A Keycloak home of the stack's own: `data/` here, everything else the distribution's."""
    home = (spec.home / "home").resolve()
    (home / "data" / "import").mkdir(parents=True, exist_ok=True)
    for name in ("lib", "providers", "themes", "conf"):
        link = home / name
        target = server.home / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    return home


def command(
    spec: AuthSpec, server: AuthServer, clients: Sequence[tuple[str, Secret]]
) -> tuple[list[str], dict[str, str]]:
    """Prepare the home directory (realm file included) and return the command line and env."""
    spec.home.mkdir(parents=True, exist_ok=True)
    home = _link_distribution(spec, server)
    realm_file = home / "data" / "import" / f"{REALM}-realm.json"
    # Holds the client secrets: owner-only from the start. Imported once (an existing realm
    # is kept on later starts), and kept for a rebuilt database.
    fd = os.open(realm_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(_realm(clients), out)
    env = dict(os.environ)
    # kc.sh reads these; we start the JVM ourselves, but keep them from leaking in anyway.
    for key in ("JAVA_OPTS", "JAVA_OPTS_APPEND", "KC_BOOTSTRAP_ADMIN_PASSWORD"):
        env.pop(key, None)
    argv = [
        java_executable(),
        "-Dkc.config.built=true",
        *keycloak_jvm_args(home, server.home, spec.heap_mb),
        spec.marker,
        "-cp",
        str(server.runner),
        "io.quarkus.bootstrap.runner.QuarkusEntryPoint",
        "start",
        "--optimized",
        # Local caches: no JGroups cluster listening on every interface.
        "--cache=local",
        "--http-enabled=true",
        "--http-host=127.0.0.1",
        f"--http-port={spec.port}",
        "--hostname-strict=false",
        "--import-realm",
        "--log=file",
        f"--log-file={(spec.home / 'auth.log').resolve()}",
        "--log-level=WARN,org.keycloak.services:INFO,org.keycloak.exportimport:INFO",
    ]
    return argv, env


def answers(spec: AuthSpec, timeout_s: float = 1.0) -> bool:
    """True once the realm is imported and its OIDC discovery document is served."""
    try:
        response = httpx.get(f"{spec.realm_url}/.well-known/openid-configuration", timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return response.status_code == 200
