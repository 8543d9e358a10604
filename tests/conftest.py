"""Shared fixtures: the real local Kafka broker and schema registry, unique names, workers.

The stack is started once per test session and reused if it already runs (a developer's
`streams local up`); whatever this session started, it stops by PID at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from streams.config import Settings
from streams.local.stack import LocalStack, StackInfo

REPO = Path(__file__).resolve().parents[1]

# Hypothesis' per-example deadline is a timing assertion: on a loaded 2-core machine it
# fails tests that are correct. Speed is measured in bench/, not here.
hypothesis_settings.register_profile("streams", deadline=None)
hypothesis_settings.load_profile("streams")


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    settings = Settings.from_env(
        {"STREAMS_STATE_DIR": os.environ.get("STREAMS_STATE_DIR", str(REPO / ".streams"))}
    )
    local = LocalStack(settings)
    already_running = local.info() is not None
    info, started = local.up(timeout_s=240)
    os.environ["STREAMS_KAFKA_BOOTSTRAP"] = info.bootstrap
    os.environ["STREAMS_SCHEMA_REGISTRY_URL"] = info.registry_url
    try:
        yield info
    finally:
        if started and not already_running:
            local.down()


@pytest.fixture
def unique() -> str:
    """A name prefix no other test (or earlier run) uses: topics, groups, subjects."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def partner(tmp_path: Path) -> Iterator[object]:
    from tests.harness import PartnerServer

    server = PartnerServer(tmp_path / "partner.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def stop_leftover_processes() -> Iterator[None]:
    """Whatever a test started through tests.harness and did not stop, stop it by PID."""
    yield
    from tests.harness import Proc

    for proc in list(Proc.live):
        proc.stop()
