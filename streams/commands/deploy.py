"""`streams deploy render`: Kubernetes manifests (Kustomize) rendered from the app's declarations."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streams.app import load_app
from streams.config import Settings
from streams.errors import ConfigError


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deploy = sub.add_parser(
        "deploy",
        help="render Kubernetes manifests from the app's handlers and topics",
        description="Manifests derived from the app so they never drift from the code: a "
        "StatefulSet of workers, Strimzi KafkaTopics for every declared topic and ledger changelog, "
        "a ServiceMonitor, optional KEDA autoscaling. Topics use STREAMS_PARTITIONS, "
        "STREAMS_REPLICATION_FACTOR (3 if unset) and STREAMS_MIN_INSYNC_REPLICAS.",
    )
    actions = deploy.add_subparsers(dest="action", metavar="{render}", required=True)
    render = actions.add_parser(
        "render",
        help="write the Kustomize tree (base, components/keda, overlays dev and prod), "
        "or with --overlay print one overlay fully built",
    )
    render.add_argument(
        "--app", metavar="MODULE:ATTR", help="the App (default $STREAMS_APP, streams.examples:app)"
    )
    render.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where to write: the tree (default deploy/k8s), or <DIR>/<overlay>.yaml with --overlay",
    )
    render.add_argument(
        "--overlay", choices=["dev", "prod"], help="print (or write) this overlay's built manifests"
    )
    render.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the files under --out differ"
    )
    render.set_defaults(func=_render)


def _render(args: argparse.Namespace, settings: Settings) -> int:
    from streams import deploy

    spec = args.app or settings.app
    app = load_app(spec)
    settings = deploy.render_settings(settings)
    files = deploy.render_tree(app, settings, deploy.DeployOptions(app_spec=spec))
    if args.overlay:
        text = deploy.dump(deploy.build(files, f"overlays/{args.overlay}"))
        if args.out is None:
            sys.stdout.write(text)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{args.overlay}.yaml").write_text(text)
            print(f"wrote {args.out / (args.overlay + '.yaml')}")
        return 0
    out = args.out or Path("deploy/k8s")
    if args.check:
        problems = deploy.drift(files, out)
        for problem in problems:
            print(f"{out}/{problem}")
        if problems:
            print("run `streams deploy render` and commit the result", file=sys.stderr)
            return 1
        print(f"{out}: {len(files)} files match a fresh render")
        return 0
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is not a directory")
    written = deploy.write_tree(files, out)
    print(f"{len(files)} files under {out}: {len(written)} changed")
    return 0
