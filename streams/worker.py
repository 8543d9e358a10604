"""Starting a worker process: check config, create topics, build the runtime, run faust."""

from __future__ import annotations

import logging

from faust.worker import Worker

from streams import logsafety
from streams.app import App
from streams.codec import AvroCodec
from streams.config import Settings
from streams.kafka_probe import broker_count
from streams.ledger import DEFAULT_RETENTION_S
from streams.runtime import Runtime
from streams.security import client_config, registry_client
from streams.topics import admin, declared, ensure


def build_runtime(app: App, settings: Settings) -> Runtime:
    """Everything a worker needs, ready to run (topics exist, contracts loaded)."""
    logsafety.install()  # before faust logs its first record
    bootstrap = settings.require_kafka()
    settings.require_registry()
    app.contracts(settings)  # fail fast on a bad schemas directory
    # Wrong credentials or CA stop the worker here with one line, not in a retry loop.
    broker_count(bootstrap, timeout_s=10.0, extra=client_config(settings))
    # Declared with their config (retention, min.insync.replicas, compacted changelogs).
    partitions = ensure(admin(bootstrap, client_config(settings)), declared(app, settings))
    codec = AvroCodec(registry_client(settings))
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

    client = admin(bootstrap, client_config(settings))
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


class _Worker(Worker):
    """faust's Worker without its terminal spinner.

    At a log level of WARN or above faust keeps the spinner and, to advance it on every
    log record, sets the *root* logger to DEBUG: every `logger.debug` in faust and
    aiokafka (several per produced message, changelog writes included) then builds a
    LogRecord and runs the handlers, only for the stream handler to drop it. Without the
    spinner the root logger stays at the chosen level and those calls return at once.
    """

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None


def make_worker(runtime: Runtime, loglevel: str = "info") -> Worker:
    """The faust worker that runs `runtime` (call `.execute_from_commandline()`)."""
    logging.getLogger("streams").setLevel(loglevel.upper())
    return _Worker(runtime.faust, loglevel=loglevel, quiet=True, redirect_stdouts=False)


def run_worker(app: App, settings: Settings, loglevel: str = "info") -> None:
    """Run until SIGTERM/SIGINT; faust commits what was processed on the way out."""
    make_worker(build_runtime(app, settings), loglevel).execute_from_commandline()
