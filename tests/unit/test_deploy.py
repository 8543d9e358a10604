"""Static checks of what deploys streams: docker-compose.yml, the Dockerfile, Prometheus
config, and the Kubernetes manifests `streams deploy render` derives from the app.

No Docker engine or Kubernetes cluster runs here: compose is checked for structure, pinned
images, ports, volumes, start order and that every STREAMS_ variable is one the code reads;
the rendered manifests are validated offline with kubernetes-validate (built-in kinds, the
Kubernetes JSON schemas it ships) and with the vendored schemas in deploy/k8s/crd-schemas
(Strimzi KafkaTopic, ServiceMonitor, KEDA ScaledObject). The same services run for real in
tests/integration/test_cluster.py through `streams local`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from streams import deploy
from streams.app import load_app
from streams.cli import build_parser
from streams.config import Settings
from streams.errors import ConfigError
from streams.local.broker import BrokerSpec, _server_properties
from streams.topics import declared

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
K8S_VERSION = "1.30"
#: Custom resources are validated with these vendored schemas; any other kind must be built in.
CRD_SCHEMAS = {
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "kafkatopic-kafka.strimzi.io-v1beta2.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda.sh-v1alpha1.json",
}
UNLIKELY = "!!not-a-valid-value!!"


# -- shared ------------------------------------------------------------------------------
def is_streams_setting(name: str) -> bool:
    """True if the code reads `name`: setting it changes Settings, or a bad value is refused."""
    try:
        return Settings.from_env({name: UNLIKELY}, cwd=REPO / "deploy") != Settings.from_env(
            {}, cwd=REPO / "deploy"
        )
    except ConfigError:
        return True


def check_streams_env(env: dict[str, str], where: str) -> None:
    ours = {name: str(value) for name, value in env.items() if name.startswith("STREAMS_")}
    for name in ours:
        assert is_streams_setting(name), f"{where}: {name} is not a setting streams reads"
    Settings.from_env(ours, cwd=REPO / "deploy")  # and the values parse, together


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "docker-compose.yml").read_text()))


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    app = load_app("streams.examples:app")
    return deploy.render_tree(app, deploy.render_settings(Settings()), deploy.DeployOptions())


@pytest.fixture(scope="module", params=deploy.OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    return request.param, deploy.build(rendered, f"overlays/{request.param}")


# -- docker-compose.yml ------------------------------------------------------------------
def test_compose_has_the_services_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {
        "kafka",
        "schema-registry",
        "topics-and-schemas",
        "partner",
        "worker-1",
        "worker-2",
        "prometheus",
    } <= set(services)
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            condition = cond["condition"]
            assert condition in {"service_healthy", "service_completed_successfully", "service_started"}
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], (
                    f"{name} waits for {dep} to be healthy; it has no healthcheck"
                )
    deps = {name: set((svc.get("depends_on") or {}).keys()) for name, svc in services.items()}

    def before(name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(deps[name])
        while todo:
            dep = todo.pop()
            assert dep != name, f"depends_on cycle through {name}"
            if dep not in seen:
                seen.add(dep)
                todo.extend(deps[dep])
        return seen

    assert before("topics-and-schemas") >= {"kafka", "schema-registry"}
    for worker in ("worker-1", "worker-2"):
        assert before(worker) >= {"kafka", "schema-registry", "topics-and-schemas", "partner"}
        assert (
            services[worker]["depends_on"]["topics-and-schemas"]["condition"]
            == "service_completed_successfully"
        )
    assert before("prometheus") >= {"worker-1", "worker-2"}


def test_compose_images_are_pinned_and_the_worker_image_is_built(compose: dict[str, Any]) -> None:
    built = [name for name, svc in compose["services"].items() if "build" in svc]
    assert built, "no service builds the worker image from the Dockerfile"
    worker_image = compose["services"][built[0]]["image"]
    for name, svc in compose["services"].items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, (
            f"{name}: image {image} is not pinned by tag"
        )
    for name in ("worker-1", "worker-2", "partner", "topics-and-schemas"):
        assert compose["services"][name]["image"] == worker_image


def test_compose_env_uses_only_real_settings(compose: dict[str, Any]) -> None:
    assert not is_streams_setting("STREAMS_NO_SUCH_SETTING")  # the check can fail
    for name, svc in compose["services"].items():
        env = svc.get("environment") or {}
        assert isinstance(env, dict), f"{name}: use the mapping form for environment"
        check_streams_env(env, f"docker-compose.yml {name}")
    worker = compose["services"]["worker-1"]["environment"]
    # the whole worker environment parses together
    settings = Settings.from_env({k: str(v) for k, v in worker.items()}, cwd=REPO / "deploy")
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.partner_url == "http://partner:8900"
    assert settings.web_host == "0.0.0.0"
    assert settings.schemas_dir == Path("/app/schemas")


def test_compose_ports_volumes_and_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    named = set(compose["volumes"])
    host_ports = []
    for name, svc in services.items():
        for mapping in svc.get("ports", []):
            host, _, _container = mapping.rpartition(":")
            assert host.startswith("127.0.0.1:"), f"{name}: publish {mapping} on loopback only"
            host_ports.append(host)
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("./") or source in named, f"{name}: volume {source} is not declared"
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"
    states = set()
    for name in ("worker-1", "worker-2"):
        svc = services[name]
        env = svc["environment"]
        port = env["STREAMS_WEB_PORT"]
        assert any(p.endswith(f":{port}") for p in svc["ports"])
        assert port in " ".join(svc["healthcheck"]["test"]) and "/readyz" in " ".join(
            svc["healthcheck"]["test"]
        )
        (volume,) = svc["volumes"]
        source, target = volume.split(":")[:2]
        assert target == env["STREAMS_STATE_DIR"], f"{name}: the state volume is not at STREAMS_STATE_DIR"
        states.add(source)
        assert svc["command"] == ["worker"]
    assert len(states) == 2, "each worker needs its own state volume (RocksDB locks its directory)"
    # The commands the compose file runs exist in the CLI.
    parser = build_parser()
    init = " ".join(services["topics-and-schemas"]["command"])
    for command in re.findall(r"streams ([a-z]+ [a-z]+)", init):
        parser.parse_args(command.split())
    assert "streams topics create" in init and "streams schemas register" in init
    partner = services["partner"]
    assert partner["entrypoint"] == ["python", "-m", "streams.partner"]
    assert "--port" in partner["command"] and "--host" in partner["command"]


def test_prometheus_scrapes_the_workers_and_alerts_on_real_metrics(compose: dict[str, Any]) -> None:
    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = prom["scrape_configs"]
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    services = compose["services"]
    assert targets == {
        f"{name}:{services[name]['environment']['STREAMS_WEB_PORT']}" for name in ("worker-1", "worker-2")
    }
    assert job["metrics_path"] == "/metrics"
    metrics_source = (REPO / "streams/metrics.py").read_text()
    alerts = (REPO / "deploy/prometheus/alerts.yml").read_text()
    yaml.safe_load(alerts)
    for metric in set(re.findall(r"\b(streams_[a-z_]+?)(?:_total)?\b", alerts)):
        assert f'"{metric}' in metrics_source, (
            f"alerts.yml uses {metric}, which streams/metrics.py does not export"
        )


def test_dockerfile_is_slim_non_root_and_pinned() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) >= 2, "build the venv in one stage, copy it into a clean one"
    for stage in stages:
        image = stage.split()[0]
        assert re.match(r"^python:3\.11\.\d+-slim", image), f"{image}: use a pinned slim Python 3.11 base"
    final = stages[-1]
    user = re.search(r"^USER (\S+)", final, flags=re.M)
    assert user and user.group(1).split(":")[0] not in {"0", "root"}
    assert not re.search(r"apt-get install|gcc|build-essential", final), "no build tools in the final image"
    assert "COPY --from=" in final
    env = dict(re.findall(r"(STREAMS_[A-Z_]+)=(\S+)", text))
    check_streams_env(env, "Dockerfile")
    assert f"EXPOSE {env['STREAMS_WEB_PORT']}" in final
    assert 'ENTRYPOINT ["streams"]' in final
    ignore = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".streams", "tests"} <= set(ignore)


# -- Kubernetes --------------------------------------------------------------------------
def test_committed_manifests_equal_a_fresh_render(rendered: dict[str, str]) -> None:
    problems = deploy.drift(rendered, K8S)
    assert problems == [], "deploy/k8s drifted from the app; run `streams deploy render`:\n" + "\n".join(
        problems
    )


def test_rendered_manifests_pass_the_offline_validator(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, objs = overlay
    counts: dict[str, int] = {}
    for obj in objs:
        key = (obj["apiVersion"], obj["kind"])
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
        if key in CRD_SCHEMAS:
            schema = json.loads((K8S / "crd-schemas" / CRD_SCHEMAS[key]).read_text())
            jsonschema.Draft202012Validator.check_schema(schema)
            jsonschema.Draft202012Validator(schema).validate(obj)
        else:
            # Raises SchemaNotFoundError for a kind it does not know: nothing goes unchecked.
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    print(f"\n{name}: {sum(counts.values())} resources valid ({counts})")
    assert counts["StatefulSet"] == 1 and counts["PodDisruptionBudget"] == 1 and counts["ServiceMonitor"] == 1


def test_manifests_follow_the_app(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, objs = overlay
    app = load_app("streams.examples:app")
    settings = deploy.render_settings(Settings())
    partitions = deploy.source_partitions(app, settings)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in objs:
        by_kind.setdefault(obj["kind"], []).append(obj)

    topics = {t["spec"]["topicName"]: t["spec"] for t in by_kind["KafkaTopic"]}
    assert set(topics) == {s.name for s in declared(app, settings)}, "a declared topic has no KafkaTopic"
    for handler in app.handlers:
        changelog = topics[f"{app.name}-{handler.name}-ledger-changelog"]
        assert changelog["config"]["cleanup.policy"] == "compact"
        assert changelog["partitions"] == topics[handler.topic]["partitions"]
        assert topics[f"{handler.topic}.retry"]["partitions"] == topics[handler.topic]["partitions"]
    expected_rf = 1 if name == "dev" else 3
    assert {t["replicas"] for t in topics.values()} == {expected_rf}
    assert {t["config"]["min.insync.replicas"] for t in topics.values()} == {"1" if name == "dev" else "2"}

    (sts,) = by_kind["StatefulSet"]
    assert 1 <= sts["spec"]["replicas"] <= partitions
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    (config,) = by_kind["ConfigMap"]
    check_streams_env(config["data"], f"{name} ConfigMap")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert (
        mounts[sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]]
        == config["data"]["STREAMS_STATE_DIR"]
    )
    assert int(config["data"]["STREAMS_WEB_PORT"]) == container["ports"][0]["containerPort"]
    refs = [e.get("configMapRef", e.get("secretRef"))["name"] for e in container["envFrom"]]
    assert config["metadata"]["name"] in refs
    secrets = by_kind.get("Secret", [])
    for secret in secrets:
        check_streams_env(secret["stringData"], f"{name} Secret")
    if name == "prod":
        assert not secrets, "prod credentials come from a Secret made outside the repository"
        (scaled,) = by_kind["ScaledObject"]
        assert scaled["spec"]["maxReplicaCount"] <= partitions
        assert scaled["spec"]["scaleTargetRef"]["name"] == sts["metadata"]["name"]
        assert {t["metadata"]["consumerGroup"] for t in scaled["spec"]["triggers"]} == {app.name}
        assert sts["spec"]["replicas"] == partitions
    else:
        assert "ScaledObject" not in by_kind
        assert {s["metadata"]["name"] for s in secrets} == {
            r for r in refs if r != config["metadata"]["name"]
        }
    assert len({o["metadata"]["namespace"] for o in objs}) == 1


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl to cross-check the Kustomize build")
def test_kubectl_kustomize_builds_the_same(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, objs = overlay
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / name)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr

    def key(o: dict[str, Any]) -> tuple[str, str]:
        return o["kind"], o["metadata"]["name"]

    real = {key(o): o for o in yaml.safe_load_all(out.stdout) if o}
    assert real == {key(o): o for o in objs}


def test_render_cli_check_and_overlay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli import main

    assert main(["deploy", "render", "--out", str(tmp_path)]) == 0
    assert main(["deploy", "render", "--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "base" / "pdb.yaml").write_text("# edited by hand\n")
    assert main(["deploy", "render", "--out", str(tmp_path), "--check"]) == 1
    capsys.readouterr()
    assert main(["deploy", "render", "--overlay", "prod"]) == 0
    kinds = [d["kind"] for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert "ScaledObject" in kinds and "StatefulSet" in kinds


# -- the cluster `streams local up --brokers 3` runs ---------------------------------------
def test_local_cluster_node_config(tmp_path: Path) -> None:
    voters = ((1, 9101), (2, 9102), (3, 9103))
    spec = BrokerSpec(tmp_path / "kafka-2", 9002, 9102, 384, node_id=2, voters=voters)
    props = dict(line.split("=", 1) for line in _server_properties(spec).splitlines())
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"
    assert props["node.id"] == "2"
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    alone = dict(
        line.split("=", 1)
        for line in _server_properties(BrokerSpec(tmp_path / "k", 9000, 9100, 384)).splitlines()
    )
    assert alone["controller.quorum.voters"] == "1@127.0.0.1:9100"
    assert alone["offsets.topic.replication.factor"] == "1"
    assert "min.insync.replicas" not in alone
