"""Starting a worker process: check config, create topics, build the runtime, run faust."""

from __future__ import annotations

import logging

from streams.app import App
from streams.codec import AvroCodec
from streams.config import Settings
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
        retention_s=app.retention_s,
    )


def run_worker(app: App, settings: Settings, loglevel: str = "info") -> None:
    """Run until SIGTERM/SIGINT; faust commits what was processed on the way out."""
    from faust.worker import Worker

    runtime = build_runtime(app, settings)
    logging.getLogger("streams").setLevel(loglevel.upper())
    worker = Worker(runtime.faust, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
