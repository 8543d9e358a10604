"""Fetching the broker's jars and the registry's app from Maven Central, cached.

Maven resolves `deploy/local/pom.xml` into ~/.m2 (its own cache); we remember the
resulting classpath under ~/.cache/streams keyed by the pom's hash, so a warm
`streams local up` does not start Maven at all.

The secure stack's auth server (Keycloak, which Apicurio's basic auth needs) comes the
same way from its own pom, `deploy/local/keycloak-pom.xml`, so a plain stack never
downloads it; `resolve_auth_server` unpacks it once and runs its one-off build step.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
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
        raise InfraError(f"Maven could not resolve {pom}: " + " | ".join(tail))
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


def _resolved_paths(pom: Path, kind: str, offline_ok: bool) -> list[Path]:
    """The files `pom` resolves to: Maven's answer, cached by the pom's digest."""
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    index = cache / f"{kind}-{digest}.json"
    if offline_ok and index.is_file():
        cached = [Path(p) for p in json.loads(index.read_text())]
        if all(p.is_file() for p in cached):
            return cached
    paths = _run_maven(pom, cache / f"{kind}-{digest}.txt")
    index.write_text(json.dumps([str(p) for p in paths]))
    return paths


def resolve(offline_ok: bool = True) -> Artifacts:
    """Resolve (downloading on first use) the broker and registry named in the pom."""
    pom = pom_path()
    kafka_version, registry_version = _pom_versions(pom)
    paths = _resolved_paths(pom, "classpath", offline_ok)

    archives = [p for p in paths if p.name.endswith(".tar.gz")]
    jars = [p for p in paths if p.suffix == ".jar"]
    if len(archives) != 1 or not jars:
        raise InfraError("deploy/local/pom.xml must resolve the Kafka jars and one registry archive")
    runner = _extract_registry(archives[0], registry_version)
    return Artifacts(kafka_version, jars, registry_version, runner)


# -- the auth server (secure stack only) ------------------------------------------------


@dataclass(frozen=True)
class AuthServer:
    """An unpacked, built Keycloak distribution."""

    version: str
    home: Path

    @property
    def runner(self) -> Path:
        return self.home / "lib" / "quarkus-run.jar"


#: The options the distribution is built with once (`kc.sh build`); `start --optimized`
#: then skips Quarkus' re-augmentation, which would otherwise cost ~20 s on every start.
AUTH_BUILD_OPTIONS = ("--db=dev-file", "--cache=local")


def auth_pom_path() -> Path:
    return pom_path().parent / "keycloak-pom.xml"


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One process at a time unpacks or builds (two stacks may start together)."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def keycloak_jvm_args(home: Path, dist: Path, heap_mb: int) -> list[str]:
    """The JVM options Keycloak's kc.sh would pass, for running it without the script."""
    return [
        "-Djava.util.concurrent.ForkJoinPool.common.threadFactory="
        "io.quarkus.bootstrap.forkjoin.QuarkusForkJoinWorkerThreadFactory",
        f"-Xmx{heap_mb}m",
        "-Xms64m",
        "-XX:MetaspaceSize=96M",
        "-XX:MaxMetaspaceSize=256m",
        # Fewer JIT and GC threads start faster on a small machine.
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-XX:+ExitOnOutOfMemoryError",
        "-Dfile.encoding=UTF-8",
        "-Djava.security.egd=file:/dev/urandom",
        "--add-opens=java.base/java.util=ALL-UNNAMED",
        "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
        "--add-opens=java.base/java.security=ALL-UNNAMED",
        "-Duser.language=en",
        "-Duser.country=US",
        f"-Dkc.home.dir={home}",
        f"-Djboss.server.config.dir={dist / 'conf'}",
        "-Djava.util.logging.manager=org.jboss.logmanager.LogManager",
        "-Dpicocli.disable.closures=true",
    ]


def _build_keycloak(dist: Path) -> None:
    java = shutil.which("java")
    if java is None:
        raise InfraError("java is not on PATH; install a JDK 17 (apt-get install openjdk-17-jdk)")
    argv = [
        java,
        *keycloak_jvm_args(dist, dist, 512),
        "-cp",
        str(dist / "lib" / "quarkus-run.jar"),
        "io.quarkus.bootstrap.runner.QuarkusEntryPoint",
        "build",
        *AUTH_BUILD_OPTIONS,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=dist)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise InfraError(f"building Keycloak in {dist} failed: " + " | ".join(tail))


def _extract_keycloak(archive: Path, version: str) -> Path:
    target = cache_dir() / f"keycloak-{version}"
    built = target / ".streams-built"
    wanted = " ".join(AUTH_BUILD_OPTIONS)
    if built.is_file() and built.read_text() == wanted:
        return target
    with _locked(f"keycloak-{version}"):
        if built.is_file() and built.read_text() == wanted:
            return target
        if not (target / "lib" / "quarkus-run.jar").is_file():
            tmp = target.with_name(target.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
            roots = [p for p in tmp.iterdir() if p.is_dir()]
            if len(roots) != 1 or not (roots[0] / "lib" / "quarkus-run.jar").is_file():
                raise InfraError(f"{archive.name} is not a Keycloak distribution; check <keycloak.version>")
            for script in (roots[0] / "bin").glob("*.sh"):
                script.chmod(0o755)  # zipfile drops the mode bits
            shutil.rmtree(target, ignore_errors=True)
            roots[0].rename(target)
            shutil.rmtree(tmp, ignore_errors=True)
        _build_keycloak(target)
        built.write_text(wanted)
    return target


def resolve_auth_server(offline_ok: bool = True) -> AuthServer:
    """Resolve (downloading and building on first use) the Keycloak named in its pom."""
    pom = auth_pom_path()
    if not pom.is_file():
        raise InfraError(f"no {pom}; run streams from its source checkout")
    match = re.search(r"<keycloak\.version>([^<]+)</keycloak\.version>", pom.read_text())
    if not match:
        raise InfraError(f"{pom} must set <keycloak.version>")
    version = match.group(1)
    paths = _resolved_paths(pom, "keycloak", offline_ok)
    archives = [p for p in paths if p.name.endswith(".zip")]
    if len(archives) != 1:
        raise InfraError(f"{pom} must resolve exactly one Keycloak distribution zip")
    return AuthServer(version, _extract_keycloak(archives[0], version))
