"""`App`: a named set of handlers with its contracts, run as a faust worker.

app = App("orders-service", orders.handlers, imports.handlers)
app.run_worker()            # or: streams worker --app mypkg.service:app
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Literal

from streams.config import Settings
from streams.errors import ConfigError
from streams.handlers import Handlers, HandlerSpec
from streams.schemas import Contract, load_dir
from streams.topics import TopicSpec

Guarantee = Literal["at_least_once", "exactly_once"]


class App:
    """The handlers one worker process runs, and how."""

    def __init__(
        self,
        name: str,
        *handlers: Handlers,
        schemas_dir: str | Path | None = None,
        guarantee: Guarantee = "at_least_once",
        retention_s: float | None = None,
    ) -> None:
        self.name = name
        self.guarantee = guarantee
        #: Ledger retention; None follows the source topic's retention.ms (see worker.py).
        self.retention_s = retention_s
        self._schemas_dir = Path(schemas_dir) if schemas_dir else None
        self._groups: list[Handlers] = list(handlers)
        self._contracts: dict[str, Contract] | None = None

    def include(self, handlers: Handlers) -> None:
        self._groups.append(handlers)

    @property
    def handlers(self) -> list[HandlerSpec]:
        return [spec for group in self._groups for spec in group.specs]

    def schemas_dir(self, settings: Settings | None = None) -> Path:
        if self._schemas_dir is not None:
            return self._schemas_dir
        return (settings or Settings.from_env()).schemas_dir

    def contracts(self, settings: Settings | None = None) -> dict[str, Contract]:
        if self._contracts is None:
            self._contracts = load_dir(self.schemas_dir(settings))
        return self._contracts

    def contract(self, topic_or_schema: str) -> Contract:
        contracts = self.contracts()
        if topic_or_schema in contracts:
            return contracts[topic_or_schema]
        for contract in contracts.values():
            if contract.path.stem == topic_or_schema or contract.schema.name == topic_or_schema:
                return contract
        raise ConfigError(
            f"no schema for {topic_or_schema!r} in {self.schemas_dir()}/topics.json; add it there"
        )

    def topics(self, settings: Settings) -> list[TopicSpec]:
        """Every topic this app reads or writes (changelogs are faust's to create)."""
        rf = settings.replication_factor
        seen: dict[str, TopicSpec] = {}
        status = settings.topic(settings.status_topic)
        seen[status] = TopicSpec(status, settings.partitions, rf)
        for spec in self.handlers:
            source = settings.topic(spec.topic)
            seen.setdefault(source, TopicSpec(source, settings.partitions, rf))
            for suffix in (".retry", ".dlq"):
                seen.setdefault(
                    source + suffix,
                    TopicSpec(source + suffix, settings.partitions, rf, follows=source),
                )
            for topic in spec.publishes:
                name = settings.topic(topic)
                seen.setdefault(name, TopicSpec(name, settings.partitions, rf))
        return list(seen.values())


def load_app(spec: str) -> App:
    """Import `module:attribute` and check it is an App."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"cannot import {module_name!r} for the app ({exc}); check STREAMS_APP / --app"
        ) from None
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise ConfigError(f"{spec} is not a streams.App; check STREAMS_APP / --app")
    return app
