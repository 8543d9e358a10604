"""Starting a worker process: check config, create topics, build the runtime, run faust."""

from __future__ import annotations

import logging

from streams.app import App
from streams.codec import AvroCodec
from streams.config import Settings
from streams.ledger import DEFAULT_RETENTION_S
from streams.runtime import Runtime
from streams.schema_registry import SchemaRegistryClient
from streams.topics import admin, declared, ensure


def build_runtime(app: App, settings: Settings) -> Runtime:
    """Everything a worker needs, ready to run (topics exist, contracts loaded)."""
    bootstrap = settings.require_kafka()
    registry_url = settings.require_registry()
    app.contracts(settings)  # fail fast on a bad schemas directory
    # Declared with their config (retention, min.insync.replicas, compacted changelogs).
    partitions = ensure(admin(bootstrap), declared(app, settings))
    codec = AvroCodec(SchemaRegistryClient(registry_url))
    return Runtime(
        app,
        settings,
        partitions=partitions,
        web_port=settings.web_port,
        codec=codec,
        retention_s=app.retention_s
        if app.retention_s is not None
        else _topic_retention_s(bootstrap, app, settings),
    )


def _topic_retention_s(bootstrap: str, app: App, settings: Settings) -> float:
    """The shortest retention.ms of the app's source topics: a record older than that can
    no longer be redelivered, so its ledger entry has served its purpose. Topics kept
    forever (-1) fall back to the default of 7 days, so the ledger stays bounded."""
    from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

    client = admin(bootstrap)
    sources = {settings.topic(spec.topic) for spec in app.handlers}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in sources]
    retentions = []
    for future in client.describe_configs(resources).values():
        try:
            entry = future.result(15).get("retention.ms")
        except Exception:  # unreadable config: keep the default rather than fail the worker
            continue
        if entry is not None and entry.value not in (None, "-1"):
            retentions.append(int(entry.value) / 1000)
    return min(retentions) if retentions else DEFAULT_RETENTION_S


def run_worker(app: App, settings: Settings, loglevel: str = "info") -> None:
    """Run until SIGTERM/SIGINT; faust commits what was processed on the way out."""
    from faust.worker import Worker

    runtime = build_runtime(app, settings)
    logging.getLogger("streams").setLevel(loglevel.upper())
    worker = Worker(runtime.faust, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
