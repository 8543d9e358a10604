"""Kubernetes manifests derived from the app, so they never drift from the code.

`render_tree` turns an `App` (its handlers and `streams.topics.declared` topics: sources,
retry, dead-letter, status, ledger changelogs, replay markers) into a Kustomize tree:

    base/               StatefulSet, Services, ConfigMap, PodDisruptionBudget,
                        Strimzi KafkaTopics, Prometheus ServiceMonitor
    components/keda/    a KEDA ScaledObject scaling on the consumer group's lag
    overlays/dev/       one replica, single-replica topics, a dev Secret
    overlays/prod/      replicas = partitions, KEDA, credentials from an existing Secret

`build` applies the subset of Kustomize these files use (resources, components,
namespace, JSON 6902 patches, images, replicas) so the rendered overlays can be checked
without a kustomize binary; the tests compare it with `kubectl kustomize` where one exists.
"""

from __future__ import annotations

import copy
import dataclasses
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.app import App
from streams.config import Settings
from streams.errors import ConfigError
from streams.topics import TopicSpec, declared

Obj = dict[str, Any]
OVERLAYS = ("dev", "prod")
TREE_DIRS = ("base", "components", "overlays")
KUSTOMIZE = "kustomize.config.k8s.io/v1beta1"
KUSTOMIZE_COMPONENT = "kustomize.config.k8s.io/v1alpha1"


@dataclass(frozen=True)
class DeployOptions:
    """What the manifests need that the app does not declare."""

    app_spec: str = "streams.examples:app"
    name: str = "streams-worker"
    image: str = "streams-worker"
    image_tag: str = "0.1.0"
    #: The Strimzi `Kafka` resource the topics belong to (label strimzi.io/cluster).
    strimzi_cluster: str = "kafka"
    #: Strimzi names the bootstrap Service `<cluster>-kafka-bootstrap`.
    kafka_port: int = 9092
    web_port: int = 6066
    state_dir: str = "/var/lib/streams"
    state_size: str = "5Gi"
    #: Consumer-group lag per partition above which KEDA adds a worker.
    lag_threshold: int = 100

    @property
    def bootstrap(self) -> str:
        return f"{self.strimzi_cluster}-kafka-bootstrap:{self.kafka_port}"

    @property
    def credentials(self) -> str:
        return f"{self.name}-credentials"


def render_settings(settings: Settings | None = None) -> Settings:
    """The settings manifests are rendered with: the environment's, replicated for a cluster.

    Replication factor 3 and min.insync.replicas 2 unless STREAMS_REPLICATION_FACTOR /
    STREAMS_MIN_INSYNC_REPLICAS say otherwise (a lone test broker's RF 1 is not a cluster's).
    """
    settings = settings or Settings()
    if settings.replication_factor == 1:
        settings = dataclasses.replace(settings, replication_factor=3)
    return settings


# -- the app's resources -----------------------------------------------------------------
def _labels(opts: DeployOptions) -> dict[str, str]:
    return {"app.kubernetes.io/name": opts.name, "app.kubernetes.io/part-of": "streams"}


def _meta(name: str, opts: DeployOptions, **extra: Any) -> Obj:
    return {"name": name, "labels": _labels(opts), **extra}


def _k8s_name(topic: str) -> str:
    """A topic name as a resource name: DNS-1123 (lowercase, digits, '-', '.')."""
    return topic.lower().replace("_", "-")


def kafka_topic(spec: TopicSpec, partitions: int, opts: DeployOptions) -> Obj:
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaTopic",
        "metadata": {
            "name": _k8s_name(spec.name),
            "labels": {**_labels(opts), "strimzi.io/cluster": opts.strimzi_cluster},
        },
        "spec": {
            "topicName": spec.name,
            "partitions": partitions,
            "replicas": spec.replication_factor,
            "config": {k: str(v) for k, v in sorted(spec.config.items())},
        },
    }


def _topics(app: App, settings: Settings) -> list[tuple[TopicSpec, int]]:
    specs = declared(app, settings)
    counts: dict[str, int] = {}
    result = []
    # Followers (retry, DLQ, changelogs) take their source's partitions, as `ensure` does.
    for spec in sorted(specs, key=lambda s: s.follows is not None):
        n = counts.get(spec.follows, spec.partitions) if spec.follows else spec.partitions
        counts[spec.name] = n
    for spec in specs:
        result.append((spec, counts[spec.name]))
    return result


def source_partitions(app: App, settings: Settings) -> int:
    """The parallelism the app can use: the fewest partitions of any handler's source topic."""
    counts = {spec.name: n for spec, n in _topics(app, settings)}
    return min((counts[settings.topic(h.topic)] for h in app.handlers), default=1)


def _config(app: App, settings: Settings, opts: DeployOptions) -> Obj:
    data = {
        "STREAMS_APP": opts.app_spec,
        "STREAMS_KAFKA_BOOTSTRAP": opts.bootstrap,
        "STREAMS_PARTITIONS": str(settings.partitions),
        "STREAMS_REPLICATION_FACTOR": str(settings.replication_factor),
        "STREAMS_MIN_INSYNC_REPLICAS": str(settings.effective_min_insync_replicas),
        "STREAMS_RETENTION_MS": str(settings.retention_ms),
        "STREAMS_STATE_DIR": opts.state_dir,
        "STREAMS_SCHEMAS_DIR": "/app/schemas",
        "STREAMS_WEB_HOST": "0.0.0.0",
        "STREAMS_WEB_PORT": str(opts.web_port),
    }
    if settings.workspace:
        data["STREAMS_WORKSPACE"] = settings.workspace
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(f"{opts.name}-config", opts),
        "data": data,
    }


def _probe(path: str, period: int, failures: int, delay: int = 0) -> Obj:
    probe: Obj = {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 3}
    if delay:
        probe["initialDelaySeconds"] = delay
    probe["failureThreshold"] = failures
    return probe


def _statefulset(app: App, settings: Settings, opts: DeployOptions) -> Obj:
    selector = {"app.kubernetes.io/name": opts.name}
    container = {
        "name": "worker",
        "image": f"{opts.image}:{opts.image_tag}",
        "args": ["worker"],
        "envFrom": [
            {"configMapRef": {"name": f"{opts.name}-config"}},
            {"secretRef": {"name": opts.credentials}},
        ],
        "ports": [{"name": "http", "containerPort": opts.web_port, "protocol": "TCP"}],
        # Ready only with partitions assigned and ledgers recovered from their changelogs.
        "readinessProbe": _probe("/readyz", 10, 3),
        "livenessProbe": _probe("/healthz", 20, 3),
        # Changelog recovery of a large ledger can take minutes: liveness waits for this.
        "startupProbe": _probe("/healthz", 5, 60),
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "state", "mountPath": opts.state_dir},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(opts.name, opts),
        "spec": {
            "serviceName": f"{opts.name}-headless",
            # Never more workers than partitions: extra ones would sit idle.
            "replicas": min(2, source_partitions(app, settings)),
            # Workers need no ordered start: they join the group and rebalance.
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": _labels(opts)},
                "spec": {
                    # Time for a graceful stop: finish the batch, flush, commit offsets.
                    "terminationGracePeriodSeconds": 60,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 100,
                                    "podAffinityTerm": {
                                        "labelSelector": {"matchLabels": selector},
                                        "topologyKey": "kubernetes.io/hostname",
                                    },
                                }
                            ]
                        }
                    },
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
            # One RocksDB ledger per pod name: a restarted pod finds its state and only
            # replays the changelog's tail.
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "state"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": opts.state_size}},
                    },
                }
            ],
        },
    }


def _services(opts: DeployOptions) -> list[Obj]:
    selector = {"app.kubernetes.io/name": opts.name}
    port = [{"name": "http", "port": opts.web_port, "targetPort": "http", "protocol": "TCP"}]
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(f"{opts.name}-headless", opts),
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": selector,
                "ports": port,
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(opts.name, opts),
            "spec": {"selector": selector, "ports": port},
        },
    ]


def _pdb(opts: DeployOptions) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(opts.name, opts),
        # One voluntary eviction at a time: each costs a rebalance.
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": opts.name}}},
    }


def _service_monitor(opts: DeployOptions) -> Obj:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(opts.name, opts),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": opts.name}},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}],
        },
    }


def _scaled_object(app: App, settings: Settings, opts: DeployOptions) -> Obj:
    group = settings.topic(app.name)  # faust's consumer group is the app id
    sources = sorted({settings.topic(h.topic) for h in app.handlers})
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _meta(opts.name, opts),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": opts.name},
            "minReplicaCount": 1,
            # More workers than partitions would idle: the cap comes from the topics.
            "maxReplicaCount": source_partitions(app, settings),
            "pollingInterval": 30,
            # Scaling down costs a rebalance: do it only after lag stayed low a while.
            "cooldownPeriod": 300,
            "triggers": [
                {
                    "type": "kafka",
                    "metadata": {
                        "bootstrapServers": opts.bootstrap,
                        "consumerGroup": group,
                        "topic": topic,
                        "lagThreshold": str(opts.lag_threshold),
                        "offsetResetPolicy": "earliest",
                        "allowIdleConsumers": "false",
                    },
                }
                for topic in sources
            ],
        },
    }


# -- the Kustomize tree ------------------------------------------------------------------
def _yaml() -> Any:
    # Imported on use: only `streams deploy` needs YAML, workers never do.
    try:
        import yaml
    except ImportError:
        raise ConfigError(
            "streams deploy needs PyYAML; install the dev extra: pip install -e '.[dev]'"
        ) from None
    return yaml


class _Dumper:
    """YAML output: keys in insertion order, multi-line strings as literal blocks."""

    @staticmethod
    def dump_all(docs: list[Any]) -> str:
        yaml = _yaml()

        class Dumper(yaml.SafeDumper):  # type: ignore[misc,name-defined]
            pass

        def text(dumper: Any, data: str) -> Any:
            style = "|" if "\n" in data else None
            return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

        Dumper.add_representer(str, text)
        return str(yaml.dump_all(docs, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=110))


def _header(opts: DeployOptions) -> str:
    return (
        f"# Rendered by `streams deploy render` from {opts.app_spec}: do not edit by hand;\n"
        "# change the app or streams/deploy.py and render again (a test checks they agree).\n"
    )


def _patch(ops: list[Obj]) -> str:
    return _Dumper.dump_all([ops]).removesuffix("...\n")


def render_tree(app: App, settings: Settings, opts: DeployOptions | None = None) -> dict[str, str]:
    """The Kustomize tree: relative path -> file text."""
    opts = opts or DeployOptions()
    partitions = source_partitions(app, settings)
    head = _header(opts)
    files: dict[str, str] = {}

    def put(path: str, docs: list[Any]) -> None:
        files[path] = head + _Dumper.dump_all(docs)

    put("base/configmap.yaml", [_config(app, settings, opts)])
    put("base/statefulset.yaml", [_statefulset(app, settings, opts)])
    put("base/services.yaml", _services(opts))
    put("base/pdb.yaml", [_pdb(opts)])
    put("base/kafkatopics.yaml", [kafka_topic(spec, n, opts) for spec, n in _topics(app, settings)])
    put("base/servicemonitor.yaml", [_service_monitor(opts)])
    put(
        "base/kustomization.yaml",
        [
            {
                "apiVersion": KUSTOMIZE,
                "kind": "Kustomization",
                "resources": [
                    "configmap.yaml",
                    "statefulset.yaml",
                    "services.yaml",
                    "pdb.yaml",
                    "kafkatopics.yaml",
                    "servicemonitor.yaml",
                ],
            }
        ],
    )
    put("components/keda/scaledobject.yaml", [_scaled_object(app, settings, opts)])
    put(
        "components/keda/kustomization.yaml",
        [{"apiVersion": KUSTOMIZE_COMPONENT, "kind": "Component", "resources": ["scaledobject.yaml"]}],
    )

    # dev: one worker, topics on a one-broker dev cluster, a Secret with dev endpoints.
    dev_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(opts.credentials, opts),
        "type": "Opaque",
        "stringData": {
            "STREAMS_SCHEMA_REGISTRY_URL": "http://schema-registry:8080/apis/ccompat/v7",
            "STREAMS_PARTNER_URL": "http://partner:8900",
        },
    }
    put("overlays/dev/secret.yaml", [dev_secret])
    put(
        "overlays/dev/kustomization.yaml",
        [
            {
                "apiVersion": KUSTOMIZE,
                "kind": "Kustomization",
                "namespace": "streams-dev",
                "resources": ["../../base", "secret.yaml"],
                "replicas": [{"name": opts.name, "count": 1}],
                "images": [{"name": opts.image, "newTag": opts.image_tag}],
                "patches": [
                    {
                        "target": {"group": "kafka.strimzi.io", "kind": "KafkaTopic"},
                        "patch": _patch(
                            [
                                {"op": "replace", "path": "/spec/replicas", "value": 1},
                                {"op": "replace", "path": "/spec/config/min.insync.replicas", "value": "1"},
                            ]
                        ),
                    },
                    {
                        "target": {"kind": "ConfigMap", "name": f"{opts.name}-config"},
                        "patch": _patch(
                            [
                                {"op": "replace", "path": "/data/STREAMS_REPLICATION_FACTOR", "value": "1"},
                                {"op": "replace", "path": "/data/STREAMS_MIN_INSYNC_REPLICAS", "value": "1"},
                            ]
                        ),
                    },
                    {
                        "target": {"kind": "StatefulSet", "name": opts.name},
                        "patch": _patch(
                            [
                                {
                                    "op": "replace",
                                    "path": "/spec/template/spec/containers/0/resources",
                                    "value": {
                                        "requests": {"cpu": "100m", "memory": "256Mi"},
                                        "limits": {"cpu": "500m", "memory": "512Mi"},
                                    },
                                },
                                {
                                    "op": "replace",
                                    "path": "/spec/volumeClaimTemplates/0/spec/resources/requests/storage",
                                    "value": "1Gi",
                                },
                            ]
                        ),
                    },
                ],
            }
        ],
    )
    # prod: a worker per partition (KEDA scales between 1 and that), credentials from a
    # Secret created outside the repository (sealed-secrets, external-secrets, by hand).
    put(
        "overlays/prod/kustomization.yaml",
        [
            {
                "apiVersion": KUSTOMIZE,
                "kind": "Kustomization",
                "namespace": "streams",
                "resources": ["../../base"],
                "components": ["../../components/keda"],
                "replicas": [{"name": opts.name, "count": partitions}],
                "images": [{"name": opts.image, "newTag": opts.image_tag}],
                "patches": [
                    {
                        "target": {"kind": "StatefulSet", "name": opts.name},
                        "patch": _patch(
                            [
                                {
                                    "op": "replace",
                                    "path": "/spec/template/spec/containers/0/resources",
                                    "value": {
                                        "requests": {"cpu": "500m", "memory": "1Gi"},
                                        "limits": {"cpu": "2", "memory": "2Gi"},
                                    },
                                },
                                {
                                    "op": "replace",
                                    "path": "/spec/volumeClaimTemplates/0/spec/resources/requests/storage",
                                    "value": "20Gi",
                                },
                            ]
                        ),
                    }
                ],
            }
        ],
    )
    return files


def write_tree(files: Mapping[str, str], out: Path) -> list[Path]:
    written = []
    for rel, text in sorted(files.items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


def drift(files: Mapping[str, str], out: Path) -> list[str]:
    """Files under `out` that differ from a fresh render (missing, changed, or stale)."""
    problems = []
    for rel, text in sorted(files.items()):
        path = out / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.read_text() != text:
            problems.append(f"{rel}: differs from a fresh render")
    for sub in TREE_DIRS:
        root = out / sub
        if root.is_dir():
            for path in sorted(root.rglob("*.yaml")):
                rel = path.relative_to(out).as_posix()
                if rel not in files:
                    problems.append(f"{rel}: not rendered (stale?)")
    return problems


def read_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for sub in TREE_DIRS
        if (root / sub).is_dir()
        for p in sorted((root / sub).rglob("*.yaml"))
    }


# -- a small Kustomize -------------------------------------------------------------------
def build(files: Mapping[str, str], directory: str) -> list[Obj]:
    """The resources `kustomize build <directory>` gives for the features these files use."""
    return _build(files, posixpath.normpath(directory), [])


def _load(text: str) -> list[Any]:
    return [doc for doc in _yaml().safe_load_all(text) if doc]


def _build(files: Mapping[str, str], directory: str, inherited: list[Obj]) -> list[Obj]:
    kpath = f"{directory}/kustomization.yaml"
    if kpath not in files:
        raise ValueError(f"no {kpath}")
    (k,) = _load(files[kpath])
    objs = list(inherited)
    for res in k.get("resources", []):
        path = posixpath.normpath(posixpath.join(directory, res))
        objs.extend(copy.deepcopy(_load(files[path])) if path in files else _build(files, path, []))
    for comp in k.get("components", []):
        objs = _build(files, posixpath.normpath(posixpath.join(directory, comp)), objs)
    if "namespace" in k:
        for obj in objs:
            obj.setdefault("metadata", {})["namespace"] = k["namespace"]
    for patch in k.get("patches", []):
        ops: list[Obj] = _load(patch["patch"])[0]
        for obj in objs:
            if _matches(obj, patch.get("target", {})):
                for op in ops:
                    _apply_op(obj, op)
    for image in k.get("images", []):
        for obj in objs:
            pod = obj.get("spec", {}).get("template", {}).get("spec", {})
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                name, _, tag = c["image"].partition(":")
                if name == image["name"]:
                    c["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    for rep in k.get("replicas", []):
        for obj in objs:
            if (
                obj["kind"] in ("Deployment", "StatefulSet", "ReplicaSet")
                and obj["metadata"]["name"] == rep["name"]
            ):
                obj["spec"]["replicas"] = rep["count"]
    return objs


def _matches(obj: Obj, target: Mapping[str, str]) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    checks = {
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "group": group,
        "version": version,
        "namespace": obj["metadata"].get("namespace", ""),
    }
    return all(checks[key] == value for key, value in target.items() if key in checks)


def _apply_op(obj: Obj, op: Mapping[str, Any]) -> None:
    """One JSON 6902 operation (add, replace, remove)."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    parent: Any = obj
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    kind = op["op"]
    if isinstance(parent, list):
        if kind == "add":
            parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(op["value"]))
        elif kind == "replace":
            parent[int(last)] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del parent[int(last)]
        else:
            raise ValueError(f"unsupported patch op {kind!r}")
        return
    if kind == "replace" and last not in parent:
        raise ValueError(f"replace of missing {op['path']}")
    if kind in ("add", "replace"):
        parent[last] = copy.deepcopy(op["value"])
    elif kind == "remove":
        del parent[last]
    else:
        raise ValueError(f"unsupported patch op {kind!r}")


def dump(objs: list[Obj]) -> str:
    return _Dumper.dump_all(objs)
