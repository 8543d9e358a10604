"""Apicurio Registry (Confluent-compatible API under /apis/ccompat/v7), file-backed H2 storage."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import httpx

from streams.local.artifacts import Artifacts

CCOMPAT_PATH = "/apis/ccompat/v7"


@dataclass(frozen=True)
class RegistrySpec:
    """Where the registry keeps its database and which port it serves."""

    home: Path
    port: int
    heap_mb: int

    @property
    def marker(self) -> str:
        return f"-Dstreams.local.registry={self.home.resolve()}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

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
    argv = [
        "java",
        f"-Xmx{spec.heap_mb}m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        spec.marker,
        f"-Dquarkus.http.port={spec.port}",
        "-Dquarkus.http.host=127.0.0.1",
        "-Dquarkus.log.console.level=WARN",
        "-Dquarkus.log.file.enable=true",
        f"-Dquarkus.log.file.path={(spec.home / 'registry.log').resolve()}",
        "-jar",
        str(artifacts.registry_runner),
    ]
    return argv, env


def answers(url: str, timeout_s: float = 1.0) -> bool:
    """True if a Confluent-compatible registry answers at `url`."""
    try:
        response = httpx.get(f"{url}/subjects", timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return response.status_code == 200
