"""Fetching the broker's jars and the registry's app from Maven Central, cached.

Maven resolves `deploy/local/pom.xml` into ~/.m2 (its own cache); we remember the
resulting classpath under ~/.cache/streams keyed by the pom's hash, so a warm
`streams local up` does not start Maven at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from streams.errors import InfraError

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def pom_path() -> Path:
    override = os.environ.get("STREAMS_LOCAL_POM")
    path = Path(override) if override else _PACKAGE_ROOT / "deploy" / "local" / "pom.xml"
    if not path.is_file():
        raise InfraError(f"no {path}; run streams from its source checkout or set STREAMS_LOCAL_POM")
    return path


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streams"


@dataclass(frozen=True)
class Artifacts:
    """Where the resolved servers live on this machine."""

    kafka_version: str
    kafka_classpath: list[Path]
    registry_version: str
    registry_runner: Path

    @property
    def kafka_classpath_str(self) -> str:
        return os.pathsep.join(str(p) for p in self.kafka_classpath)


def _pom_versions(pom: Path) -> tuple[str, str]:
    text = pom.read_text()
    kafka = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", text)
    apicurio = re.search(r"<apicurio\.version>([^<]+)</apicurio\.version>", text)
    if not kafka or not apicurio:
        raise InfraError(f"{pom} must set <kafka.version> and <apicurio.version>")
    return kafka.group(1), apicurio.group(1)


def _run_maven(pom: Path, out: Path) -> list[Path]:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError("Maven (mvn) is not on PATH; install it (apt-get install maven)")
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:build-classpath",
        f"-Dmdep.outputFile={out}",
        "-Dmdep.includeScope=runtime",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise InfraError("Maven could not resolve deploy/local/pom.xml: " + " | ".join(tail))
    return [Path(p) for p in out.read_text().strip().split(os.pathsep) if p]


def _extract_registry(archive: Path, version: str) -> Path:
    target = cache_dir() / f"apicurio-registry-{version}"
    runner = target / f"apicurio-registry-app-{version}-runner.jar"
    if runner.is_file():
        return runner
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    if not runner.is_file():
        raise InfraError(f"{archive.name} holds no {runner.name}; check <apicurio.version>")
    return runner


def resolve(offline_ok: bool = True) -> Artifacts:
    """Resolve (downloading on first use) the broker and registry named in the pom."""
    pom = pom_path()
    kafka_version, registry_version = _pom_versions(pom)
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    index = cache / f"classpath-{digest}.json"

    paths: list[Path] | None = None
    if offline_ok and index.is_file():
        cached = [Path(p) for p in json.loads(index.read_text())]
        if all(p.is_file() for p in cached):
            paths = cached
    if paths is None:
        paths = _run_maven(pom, cache / f"classpath-{digest}.txt")
        index.write_text(json.dumps([str(p) for p in paths]))

    archives = [p for p in paths if p.name.endswith(".tar.gz")]
    jars = [p for p in paths if p.suffix == ".jar"]
    if len(archives) != 1 or not jars:
        raise InfraError("deploy/local/pom.xml must resolve the Kafka jars and one registry archive")
    runner = _extract_registry(archives[0], registry_version)
    return Artifacts(kafka_version, jars, registry_version, runner)
