"""`modeldeploy`: run the operator, render manifests offline, print the CRD, run the demo."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from modeldeploy import __version__
from modeldeploy.api.base import (
    ABORT_ANNOTATION,
    API_VERSION,
    KIND,
    PAUSED_ANNOTATION,
    PROMOTE_ANNOTATION,
    RESUME_ANNOTATION,
    RETRY_ANNOTATION,
)
from modeldeploy.api.crd import CRD_FILENAME, crd_yaml
from modeldeploy.api.resource import InvalidSpecError, ObjectRef
from modeldeploy.render.options import DEFAULT_PULLER_IMAGE, RenderOptions
from modeldeploy.rollout.plan import steady_children
from modeldeploy.rollout.validate import validate

OFFLINE_UID = "00000000-0000-0000-0000-000000000000"  # the API server assigns the real one


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(fmt: str, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # aiohttp and kopf's own chatter at INFO is per request; keep it for --verbose.
    for noisy in ("aiohttp.access", "kopf.objects", "kopf.activities.probe"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


# ------------------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    from modeldeploy.handlers.config import OperatorConfig
    from modeldeploy.handlers.operator import run

    setup_logging(args.log_format, args.verbose)
    config = OperatorConfig(
        namespaces=tuple(args.namespace or _env_list("MODELDEPLOY_NAMESPACES")),
        server=args.server,
        token=os.environ.get("MODELDEPLOY_TOKEN") if args.server else None,
        log_format=args.log_format,
        health_port=args.health_port or None,
        metrics_port=args.metrics_port or None,
        resync_seconds=args.resync_seconds,
        prometheus_url=args.prometheus_url,
        puller_image=args.puller_image,
        pod_monitor_labels=tuple(_label(item) for item in args.pod_monitor_label or ()),
    )
    from modeldeploy.adapters.kube import KubeError

    try:
        run(config)
    except KubeError as error:
        print(f"error: cannot reach a cluster: {error.message or error.reason}", file=sys.stderr)
        return 1
    return 0


def _label(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SystemExit(f"error: --pod-monitor-label wants KEY=VALUE, got {item!r}")
    return key, value


def load_documents(path: str) -> list[dict[str, Any]]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def render_document(doc: dict[str, Any], options: RenderOptions) -> list[dict[str, Any]]:
    """The children of one ModelDeployment at rest; raises InvalidSpecError as the operator would."""
    spec = validate(doc)
    meta = doc.get("metadata") or {}
    parent = ObjectRef(
        name=str(meta["name"]),
        namespace=str(meta.get("namespace") or "default"),
        uid=OFFLINE_UID,
        generation=1,
    )
    return steady_children(parent, spec, options)


def cmd_render(args: argparse.Namespace) -> int:
    options = RenderOptions(puller_image=args.puller_image, pod_monitor=not args.no_pod_monitor)
    out: list[dict[str, Any]] = []
    failed = False
    for doc in load_documents(args.file):
        if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
            continue
        try:
            out += render_document(doc, options)
        except InvalidSpecError as error:
            failed = True
            name = (doc.get("metadata") or {}).get("name", "?")
            for problem in error.problems:
                print(f"error: {KIND} {name}: {problem}", file=sys.stderr)
    if failed:
        return 1
    sys.stdout.write(yaml.safe_dump_all(out, sort_keys=False))
    return 0


def cmd_crd(args: argparse.Namespace) -> int:
    text = crd_yaml()
    if args.output:
        target = Path(args.output)
        if target.is_dir() or args.output.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            target = target / CRD_FILENAME
        target.write_text(text)
        print(f"wrote {target}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


# ------------------------------------------------------------------------------ manual control

# verb -> (annotation, value or None for a fresh token, what it does)
CONTROL: dict[str, tuple[str, str | None, str]] = {
    "promote": (PROMOTE_ANNOTATION, None, "promote the canary now, skipping the remaining analysis"),
    "abort": (ABORT_ANNOTATION, None, "roll the canary back now"),
    "retry": (RETRY_ANNOTATION, None, "start a rolled-back revision's rollout again"),
    "pause": (PAUSED_ANNOTATION, "true", "hold the rollout at its current step"),
    "resume": (PAUSED_ANNOTATION, None, "continue a paused or held rollout"),
}


def _client() -> Any:
    from modeldeploy.adapters.kube import KubeClient, configuration

    return KubeClient(configuration(os.environ.get("MODELDEPLOY_SERVER")))


def _namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return str(args.namespace)
    from modeldeploy.adapters.kube import default_namespace

    return default_namespace()


def cmd_control(args: argparse.Namespace) -> int:
    from modeldeploy.adapters.kube import KubeError

    annotation, value, _ = CONTROL[args.command]
    token = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if args.command == "resume":
        # Clear the pause, and hand a token to a rollout held by inconclusive analysis.
        changes: dict[str, str | None] = {PAUSED_ANNOTATION: None, RESUME_ANNOTATION: token}
    else:
        changes = {annotation: value if value is not None else token}
    namespace = _namespace(args)
    client = _client()
    try:
        client.annotate(namespace, args.name, changes)
    except KubeError as error:
        print(f"error: {KIND} {namespace}/{args.name}: {error.message or error.reason}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"{KIND} {namespace}/{args.name}: {args.command} requested")
    return 0


def format_status(obj: dict[str, Any]) -> str:
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status") or {}
    lines = [
        f"{KIND} {meta.get('namespace')}/{meta.get('name')}  model {spec.get('model', {}).get('name')} "
        f"version {spec.get('model', {}).get('version')}",
        f"  phase:     {status.get('phase', '-')}  {status.get('message', '')}",
        f"  stable:    {status.get('stableRevision', '-')} (version {status.get('stableModelVersion', '-')})",
    ]
    if status.get("canaryRevision"):
        lines.append(
            f"  canary:    {status['canaryRevision']}  step {int(status.get('step') or 0) + 1}, "
            f"weight {status.get('canaryWeight', 0)}%, failed checks {status.get('failedChecks', 0)}"
        )
    lines.append(
        f"  ready:     {status.get('readyReplicas', 0)}/{status.get('replicas', 0)}  {status.get('url', '')}"
    )
    for result in status.get("analysis") or []:
        primary = result.get("primaryValue")
        vs = f" (primary {primary:.4g})" if isinstance(primary, int | float) else ""
        value = result.get("value")
        shown = f"{value:.4g}" if isinstance(value, int | float) else "no data"
        lines.append(
            f"  analysis:  {result['name']} = {shown}{vs}: {result['verdict']} {result.get('reason', '')}"
        )
    for cond in status.get("conditions") or []:
        lines.append(f"  {cond['type']:<10} {cond['status']:<5} {cond['reason']}: {cond.get('message', '')}")
    for entry in status.get("history") or []:
        lines.append(
            f"  history:   {entry['at']} {entry['result']} {entry['revision']} "
            f"v{entry.get('modelVersion', '')}: {entry.get('reason', '')}"
        )
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    from modeldeploy.adapters.kube import MODEL_DEPLOYMENT, KubeError

    namespace = _namespace(args)
    client = _client()
    try:
        obj = client.get(MODEL_DEPLOYMENT, namespace, args.name)
    except KubeError as error:
        print(f"error: {error.message or error.reason}", file=sys.stderr)
        return 1
    finally:
        client.close()
    if obj is None:
        print(f"error: {KIND} {namespace}/{args.name} not found", file=sys.stderr)
        return 1
    print(format_status(obj))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from modeldeploy.demo import main as demo_main

    return demo_main(examples=args.examples, rollouts=args.rollouts)


# ----------------------------------------------------------------------------------------- main


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="modeldeploy", description=__doc__)
    top.add_argument("--version", action="version", version=f"modeldeploy {__version__}")
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument("--namespace", action="append", help="watch this namespace (repeatable); default: all")
    run.add_argument(
        "--log-format", choices=["text", "json"], default=os.environ.get("MODELDEPLOY_LOG_FORMAT", "text")
    )
    run.add_argument("--health-port", type=int, default=8080, help="serve /healthz here (0 turns it off)")
    run.add_argument("--metrics-port", type=int, default=9090, help="serve /metrics here (0 turns it off)")
    run.add_argument("--resync-seconds", type=float, default=60.0, help="period of the drift-healing pass")
    run.add_argument(
        "--prometheus-url",
        default=os.environ.get(
            "MODELDEPLOY_PROMETHEUS_URL", "http://prometheus-operated.monitoring.svc:9090"
        ),
        help="default Prometheus for rollout analysis",
    )
    run.add_argument(
        "--puller-image", default=os.environ.get("MODELDEPLOY_PULLER_IMAGE", DEFAULT_PULLER_IMAGE)
    )
    run.add_argument(
        "--pod-monitor-label",
        action="append",
        metavar="KEY=VALUE",
        help="label for every rendered PodMonitor, for your Prometheus's podMonitorSelector (repeatable)",
    )
    run.add_argument(
        "--server", help="an API server URL without credentials: only for `modeldeploy demo`'s emulator"
    )
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=cmd_run)

    render = sub.add_parser("render", help="print the child manifests of ModelDeployments, offline")
    render.add_argument("-f", "--file", required=True, help="YAML file with ModelDeployments, or - for stdin")
    render.add_argument("--no-pod-monitor", action="store_true", help="as if the PodMonitor CRD were absent")
    render.add_argument("--puller-image", default=DEFAULT_PULLER_IMAGE)
    render.set_defaults(func=cmd_render)

    crd = sub.add_parser("crd", help="print the CustomResourceDefinition, or write it with --output")
    crd.add_argument("-o", "--output", help="a file, or a directory to write " + CRD_FILENAME + " into")
    crd.set_defaults(func=cmd_crd)

    for verb, (_, _, what) in CONTROL.items():
        control = sub.add_parser(verb, help=what)
        control.add_argument("name", help="the ModelDeployment")
        control.add_argument("-n", "--namespace", help="default: the current kubeconfig context's")
        control.set_defaults(func=cmd_control)
    status = sub.add_parser("status", help="show a ModelDeployment's rollout, analysis and history")
    status.add_argument("name")
    status.add_argument("-n", "--namespace")
    status.set_defaults(func=cmd_status)

    demo = sub.add_parser(
        "demo",
        help="run the operator on a local control plane (KUBEBUILDER_ASSETS), else on an emulator",
    )
    demo.add_argument("--examples", default="examples", help="directory of ModelDeployment YAML files")
    demo.add_argument(
        "--no-rollouts", dest="rollouts", action="store_false", help="skip part three, the two rollouts"
    )
    demo.set_defaults(func=cmd_demo)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
