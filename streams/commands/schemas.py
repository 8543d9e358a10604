"""`streams schemas register|check|list`: the event contracts in the schema registry.

Subjects follow the TopicNameStrategy on the workspace's topic names
(`STREAMS_WORKSPACE=ws` -> `ws.orders.created-value`). Each subject's compatibility
level comes from `schemas/topics.json` (default BACKWARD), overridable with
`--compat TOPIC_OR_SUBJECT=LEVEL`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streams import compat
from streams.config import Settings
from streams.errors import ConfigError
from streams.schema_registry import IncompatibleSchema, SchemaRegistryClient
from streams.schemas import LEVELS, Contract, load_dir, subject_for
from streams.security import registry_client

DEFAULT_DIR = Path("schemas")


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schemas = sub.add_parser(
        "schemas",
        help="register and check the Avro event contracts in schemas/",
        description="Register the *.avsc contracts listed in schemas/topics.json under their "
        "subjects (<topic>-value, workspace-prefixed), check them for compatibility, "
        "list subjects.",
    )
    actions = schemas.add_subparsers(dest="action", metavar="{register,check,list}", required=True)

    register = actions.add_parser(
        "register", help="register every schema and set each subject's compatibility level"
    )
    _common(register)
    register.set_defaults(func=_register)

    check = actions.add_parser(
        "check", help="say per subject whether the schemas are compatible; exit 1 if any is not"
    )
    _common(check)
    check.add_argument(
        "--offline",
        action="store_true",
        help="decide with Avro resolution rules locally instead of asking the registry",
    )
    check.add_argument(
        "--against",
        type=Path,
        metavar="OLD_DIR",
        help="with --offline: the schemas directory holding the existing versions",
    )
    check.set_defaults(func=_check)

    listing = actions.add_parser("list", help="subjects, their versions and compatibility levels")
    listing.set_defaults(func=_list)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--schemas",
        type=Path,
        default=DEFAULT_DIR,
        metavar="DIR",
        help="directory with topics.json and *.avsc files (default: ./schemas)",
    )
    parser.add_argument(
        "--compat",
        action="append",
        default=[],
        metavar="TOPIC=LEVEL",
        help=f"override a subject's level (topic or subject name); levels: {', '.join(LEVELS)}",
    )


def _client(settings: Settings) -> SchemaRegistryClient:
    if not settings.schema_registry_url:
        raise ConfigError(
            "STREAMS_SCHEMA_REGISTRY_URL is not set; run `streams local up` and export the "
            "lines it prints, or point it at your registry"
        )
    return registry_client(settings)


def _overrides(pairs: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, level = pair.partition("=")
        level = level.strip().upper()
        if not sep or not name.strip() or level not in LEVELS:
            raise ConfigError(f"--compat {pair!r} is not TOPIC=LEVEL; levels: {', '.join(LEVELS)}")
        result[name.strip()] = level
    return result


def _plan(args: argparse.Namespace, settings: Settings) -> list[tuple[str, Contract, str]]:
    """(subject, contract, level) for every contract, in manifest order."""
    overrides = _overrides(args.compat)
    plan = []
    for topic, contract in load_dir(args.schemas).items():
        subject = subject_for(settings.topic(topic))
        level = overrides.get(subject) or overrides.get(topic) or contract.compatibility
        plan.append((subject, contract, level))
    known = {s for s, _, _ in plan} | {c.topic for _, c, _ in plan}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"--compat names unknown topics or subjects: {', '.join(unknown)}")
    return plan


def _register(args: argparse.Namespace, settings: Settings) -> int:
    plan = _plan(args, settings)
    rc = 0
    with _client(settings) as registry:
        for subject, contract, level in plan:
            existing = registry.lookup(subject, contract.schema)
            # The level first, so a new version is checked under the intended level.
            registry.set_compatibility(subject, level)
            if existing is not None:
                print(f"{subject}: unchanged, version {existing.version} (id {existing.id}), {level}")
                continue
            try:
                schema_id = registry.register(subject, contract.schema)
            except IncompatibleSchema as exc:
                print(f"{subject}: REJECTED under {level}: {exc}")
                rc = 1
                continue
            found = registry.lookup(subject, contract.schema)
            version = f"version {found.version}" if found else "registered"
            print(f"{subject}: {version} (id {schema_id}) from {contract.path.name}, {level}")
    return rc


def _check(args: argparse.Namespace, settings: Settings) -> int:
    if args.offline:
        return _check_offline(args, settings)
    if args.against is not None:
        raise ConfigError("--against needs --offline (online checks ask the registry)")
    plan = _plan(args, settings)
    rc = 0
    with _client(settings) as registry:
        for subject, contract, level in plan:
            versions = registry.versions_or_empty(subject)
            if not versions:
                print(f"{subject}: compatible (new subject, not registered yet)")
                continue
            found = registry.lookup(subject, contract.schema)
            if found is not None:
                print(f"{subject}: compatible (already registered as version {found.version})")
                continue
            current = (registry.get_compatibility(subject) or "NONE").upper()
            note = "" if current == level else f"; topics.json says {level}, `register` sets it"
            result = registry.would_accept(subject, contract.schema)
            if result.compatible:
                print(f"{subject}: compatible ({current}{note})")
            else:
                rc = 1
                print(f"{subject}: INCOMPATIBLE under {current}{note}")
                for message in result.messages or ("the registry gave no reason",):
                    print(f"  registry: {message}")
                for reason in _explain(registry, subject, contract, current, versions):
                    print(f"  {reason}")
    return rc


def _explain(
    registry: SchemaRegistryClient,
    subject: str,
    contract: Contract,
    level: str,
    versions: list[int],
) -> tuple[str, ...]:
    """The offline checker's reasons (field paths) for a verdict the registry gave."""
    if not level.endswith("_TRANSITIVE"):
        versions = versions[-1:]
    existing = [registry.version(subject, v).schema for v in versions]
    labels = [f"version {v}" for v in versions]
    return compat.check(subject, contract.schema, existing, level, labels).reasons


def _check_offline(args: argparse.Namespace, settings: Settings) -> int:
    if args.against is None:
        raise ConfigError(
            "check --offline needs --against OLD_DIR, the schemas directory with the existing "
            "versions (e.g. a checkout of the main branch)"
        )
    old = load_dir(args.against)
    rc = 0
    for subject, contract, level in _plan(args, settings):
        previous = old.get(contract.topic)
        if previous is None:
            print(f"{subject}: compatible (new subject, not in {args.against})")
            continue
        verdict = compat.check(
            subject,
            contract.schema,
            [previous.schema],
            level,
            labels=[f"{args.against / previous.path.name}"],
        )
        if verdict.compatible:
            print(f"{subject}: compatible ({level})")
        else:
            rc = 1
            print(f"{subject}: INCOMPATIBLE under {level}")
            for reason in verdict.reasons:
                print(f"  {reason}")
    return rc


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as registry:
        subjects = registry.subjects()
        if not subjects:
            print("no subjects registered; run `streams schemas register`")
            return 0
        width = max(len(s) for s in subjects)
        print(f"{'SUBJECT':<{width}}  {'VERSIONS':<10}  {'LATEST ID':<9}  COMPATIBILITY")
        for subject in subjects:
            versions = registry.versions_or_empty(subject)
            latest = registry.latest(subject).id if versions else "-"
            level = registry.get_compatibility(subject) or "-"
            shown = ",".join(map(str, versions)) or "-"
            print(f"{subject:<{width}}  {shown:<10}  {latest!s:<9}  {level}")
    return 0
