"""`modeldeploy`: run the operator, render manifests offline, print the CRD, control a rollout."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import re
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
from modeldeploy.api.crd import CRD_FILENAME, CRD_NAME, crd_yaml
from modeldeploy.api.resource import InvalidSpecError, ObjectRef
from modeldeploy.manifest_yaml import DuplicateKeyError, UnreadableError, load_all
from modeldeploy.render.options import DEFAULT_PULLER_IMAGE, RenderOptions
from modeldeploy.render.ownership import collisions
from modeldeploy.rollout.plan import steady_children
from modeldeploy.rollout.validate import validate

OFFLINE_UID = "00000000-0000-0000-0000-000000000000"  # the API server assigns the real one
# Printed before the rendered documents: the placeholder uid makes them unfit for `kubectl apply`.
RENDER_HEADER = (
    "# Rendered offline by `modeldeploy render`, for review. Do not apply: the operator creates these\n"
    f"# itself, and their ownerReferences carry a placeholder uid ({OFFLINE_UID}).\n"
)
RENDER_SUFFIXES = (".yaml", ".yml", ".json")  # what `kubectl apply -f DIR` reads
STDIN_SOURCE = "STDIN"  # how kubectl names `-f -` in its messages
# A child's name is NAME-primary, and Services need DNS-1035 labels: no dots, upper case or '_'.
NAME_PATTERN = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


class CliError(Exception):
    """Bad input or an unreachable cluster: printed as one line, `error: ...`, exit status 1."""


# An error line quotes what the user wrote (a name, a kind, a map key): keep it one readable line
# whatever that was, a 10 MiB name or a key with a newline in it.
ERROR_LINE_LIMIT = 1000


def one_line(text: str) -> str:
    flat = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    if len(flat) <= ERROR_LINE_LIMIT:
        return flat
    return f"{flat[:ERROR_LINE_LIMIT]}... ({len(flat) - ERROR_LINE_LIMIT} more characters)"


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


def _prometheus_allow(items: list[str]) -> tuple[str, ...]:
    from modeldeploy.analysis.endpoints import ANY, allowed

    entries = tuple(part.strip() for item in items for part in item.split(",") if part.strip())
    for entry in entries:
        if entry != ANY and not allowed(entry, [entry]):
            raise SystemExit(
                "error: --prometheus-allow wants '*' or a URL like http(s)://host[:port][/path], "
                f"got {entry!r}"
            )
    return entries


# The API server stores free-form fields nested up to 10,000 levels deep (its JSON decoder's limit),
# and kopf decodes each watch event with json.loads, which counts nesting against the recursion
# limit (1000 by default): one such ModelDeployment raised RecursionError in the watcher and stopped
# the operator. With this limit it is read, and the spec refuses it (FREE_FORM_MAX_DEPTH). Python
# 3.11 calls between Python functions take no C stack; json at 10,000 levels fits an 8 MiB stack.
RUN_RECURSION_LIMIT = 30_000


def cmd_run(args: argparse.Namespace) -> int:
    from modeldeploy.handlers.config import OperatorConfig
    from modeldeploy.handlers.operator import run_operator

    sys.setrecursionlimit(max(sys.getrecursionlimit(), RUN_RECURSION_LIMIT))
    setup_logging(args.log_format, args.verbose)
    config = OperatorConfig(
        namespaces=tuple(args.namespace or _env_list("MODELDEPLOY_NAMESPACES")),
        log_format=args.log_format,
        health_port=args.health_port or None,
        metrics_port=args.metrics_port or None,
        resync_seconds=args.resync_seconds,
        prometheus_url=args.prometheus_url,
        prometheus_allow=_prometheus_allow(
            args.prometheus_allow or _env_list("MODELDEPLOY_PROMETHEUS_ALLOW")
        ),
        puller_image=args.puller_image,
        pod_monitor_labels=tuple(_label(item) for item in args.pod_monitor_label or ()),
        operator_namespace=args.operator_namespace,
        kubeconfig=args.kubeconfig,
        context=args.context,
        kube_qps=args.kube_qps,
        kube_burst=args.kube_burst,
        leader_elect=args.leader_elect,
        leader_election_namespace=args.leader_election_namespace,
        leader_election_id=args.leader_election_id,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
    )
    if config.leader_elect:
        from modeldeploy.handlers.leader import Timings

        problem = Timings(config.lease_duration, config.renew_deadline, config.retry_period).problem()
        if problem:
            raise CliError(problem)
    from modeldeploy.adapters.kube import CRD, KubeClient, KubeError, configuration

    try:
        client = KubeClient(configuration(config_file=config.kubeconfig, context=config.context))
        try:
            # One request first: kopf would retry an unreachable server for a minute, then print a
            # traceback. An answer of any status (a 403 too) means the server is there.
            client.get(CRD, None, CRD_NAME)
        except KubeError as error:
            if error.status == 0:
                raise
        finally:
            client.close()
        run_operator(config)
    except KubeError as error:
        raise CliError(error.message or error.reason) from None
    return 0


def _label(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SystemExit(f"error: --pod-monitor-label wants KEY=VALUE, got {item!r}")
    return key, value


def input_files(name: str) -> list[str]:
    """`-f` as kubectl reads it: a file, `-` for stdin, or a directory's *.yaml, *.yml and *.json."""
    if name == "-":
        return [name]
    path = Path(name)
    if path.is_dir():
        found = sorted(str(p) for p in path.iterdir() if p.suffix in RENDER_SUFFIXES and p.is_file())
        if not found:
            raise CliError(f"{name}: a directory with no *.yaml, *.yml or *.json file")
        return found
    if not path.exists():
        raise CliError(f"{name}: no such file or directory")
    return [name]


def load_documents(name: str) -> list[Any]:
    """Every document of one file (YAML or JSON), a `kind: List` expanded into its items."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_bytes().decode()
    except UnicodeDecodeError:
        raise CliError(f"{name}: not a text file (not UTF-8)") from None
    except OSError as error:
        raise CliError(f"{name}: cannot read: {error.strerror or error}") from None
    try:
        docs = [doc for doc in load_all(text) if doc is not None]
    except DuplicateKeyError as error:
        # file:line, as compilers write it, so that an editor or a CI annotation can jump there.
        raise CliError(f"{name}:{error.line}: {error.problem}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        what = "cannot read it" if isinstance(error, UnreadableError) else "not YAML or JSON"
        raise CliError(f"{name}: {what}{where}: {problem}") from None
    out: list[Any] = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out += doc["items"]
        else:
            out.append(doc)
    return out


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


def near_miss(doc: dict[str, Any]) -> str | None:
    """Why a document that looks meant as a ModelDeployment is not one, else None."""
    api_version, kind = str(doc.get("apiVersion") or ""), str(doc.get("kind") or "")
    group = API_VERSION.split("/")[0]
    if kind.lower() == KIND.lower() and kind != KIND:
        return f"kind {kind!r}: kinds are case-sensitive; did you mean {KIND}?"
    if api_version.split("/")[0] == group and api_version != API_VERSION:
        return f"apiVersion {api_version!r}: not served; this version of modeldeploy serves {API_VERSION}"
    if kind == KIND and api_version != API_VERSION:
        return f"apiVersion {api_version!r}: a {KIND} is {API_VERSION}"
    return None


def cmd_render(args: argparse.Namespace) -> int:
    options = RenderOptions(
        puller_image=args.puller_image,
        pod_monitor=not args.no_pod_monitor,
        prometheus_rule=not args.no_prometheus_rule,
    )
    out: list[tuple[str, dict[str, Any]]] = []  # (the file it came from, a child)
    problems: list[str] = []
    skipped: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    sources: list[tuple[str, str, str]] = []  # (namespace, name, where): whose children might collide
    files = [path for name in args.file for path in input_files(name)]
    for path in files:
        for index, doc in enumerate(load_documents(path), start=1):
            where = f"{path}: document {index}"
            if not isinstance(doc, dict):
                problems.append(f"{where}: a {type(doc).__name__}, not an object")
                continue
            if (miss := near_miss(doc)) is not None:
                problems.append(f"{where}: {miss}")
                continue
            if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
                skipped.append(f"{doc.get('kind') or 'an object without kind'}")
                continue
            meta = doc.get("metadata") or {}
            name = str(meta.get("name") or "")
            if name and not NAME_PATTERN.fullmatch(name):
                problems.append(
                    f"{where}: metadata.name {name!r}: must be lower-case letters, digits and '-', "
                    "starting with a letter (children and Services are named after it)"
                )
                continue
            key = (str(meta.get("namespace") or "default"), name)
            if key in seen:
                problems.append(f"{where}: {KIND} {key[0]}/{name} is also defined in {seen[key]}")
                continue
            seen[key] = where
            if name:
                sources.append((key[0], name, where))
            try:
                out += [(path, child) for child in render_document(doc, options)]
            except InvalidSpecError as error:
                problems += [f"{where}: {KIND} {name or '?'}: {problem}" for problem in error.problems]
    # Two sources whose children share a name would take each other's objects on a cluster (the
    # operator refuses that there as ChildConflict); offline, one line names both.
    problems += collisions(sources)
    if not seen and not problems:
        others = f" (found only: {', '.join(sorted(set(skipped)))})" if skipped else ""
        problems.append(f"{', '.join(files)}: no {KIND} ({API_VERSION}) to render{others}")
    if problems:
        for problem in problems:
            print(f"error: {one_line(problem)}", file=sys.stderr)
        return 1
    sys.stdout.write(render_text(out))
    return 0


def render_text(children: list[tuple[str, dict[str, Any]]]) -> str:
    """The rendered children as `helm template` prints a chart: each document opens with `---` and a
    `# Source: FILE` comment naming the file of its ModelDeployment, for one file as for many, so that
    one file's output reads the same alone as within a directory's."""
    return RENDER_HEADER + "".join(
        f"---\n# Source: {STDIN_SOURCE if source == '-' else one_line(source)}\n"
        + yaml.safe_dump(child, sort_keys=False)
        for source, child in children
    )


def cmd_crd(args: argparse.Namespace) -> int:
    text = crd_yaml()
    if args.output:
        target = Path(args.output)
        try:
            if target.is_dir() or args.output.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                target = target / CRD_FILENAME
            target.write_text(text)
        except OSError as error:
            raise CliError(f"cannot write {target}: {error.strerror or error}") from None
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


def _client(args: argparse.Namespace) -> Any:
    from modeldeploy.adapters.kube import KubeClient, KubeError, configuration

    try:
        config = configuration(config_file=args.kubeconfig, context=args.context)
    except KubeError as error:
        raise CliError(error.message) from None
    return KubeClient(config)


def _namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return str(args.namespace)
    from modeldeploy.adapters.kube import default_namespace

    return default_namespace(config_file=args.kubeconfig, context=args.context)


def _get(args: argparse.Namespace, namespace: str) -> dict[str, Any]:
    from modeldeploy.adapters.kube import MODEL_DEPLOYMENT, KubeError

    client = _client(args)
    try:
        obj: dict[str, Any] | None = client.get(MODEL_DEPLOYMENT, namespace, args.name)
    except KubeError as error:
        raise CliError(f"{KIND} {namespace}/{args.name}: {error.message or error.reason}") from None
    finally:
        client.close()
    if obj is None:
        raise CliError(f"{KIND} {namespace}/{args.name} not found")
    return obj


ROLLOUT_PHASES = ("Progressing", "Paused", "Blocked")


def refusal(verb: str, obj: dict[str, Any]) -> str | None:
    """Why `verb` would do nothing on this object (so nothing is written), else None."""
    status = obj.get("status") or {}
    phase = status.get("phase") or "not yet reconciled"
    paused = str((obj["metadata"].get("annotations") or {}).get(PAUSED_ANNOTATION, "")).lower()
    if verb in ("promote", "abort") and phase not in ROLLOUT_PHASES:
        what = "already promoting" if phase == "Promoting" else "no rollout in progress"
        return f"{what} (phase {phase}): nothing to {verb}"
    if verb == "retry" and phase != "RolledBack":
        return f"phase {phase}, not RolledBack: nothing to retry"
    if verb == "resume" and phase != "Paused" and paused not in ("true", "1", "yes"):
        return f"not paused (phase {phase}): nothing to resume"
    return None


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
    # A token written with no rollout to act on would act on the NEXT rollout: refuse instead.
    obj = _get(args, namespace)
    if (why := refusal(args.command, obj)) is not None:
        raise CliError(f"{KIND} {namespace}/{args.name}: {why}")
    client = _client(args)
    try:
        client.annotate(namespace, args.name, changes)
    except KubeError as error:
        raise CliError(f"{KIND} {namespace}/{args.name}: {error.message or error.reason}") from None
    finally:
        client.close()
    print(f"{KIND} {namespace}/{args.name}: {args.command} requested")
    if args.command == "pause" and (obj.get("status") or {}).get("phase") not in ROLLOUT_PHASES:
        print("  no rollout is in progress: the next one will hold at its first step until resumed")
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
    gate = status.get("gate")
    if gate:
        stage = "mirrored phase" if gate.get("stage") == "Mirror" else "before traffic"
        lines.append(f"  gate:      {gate.get('state', '-')} ({stage}, revision {gate.get('revision')})")
        lines += _gate_checks(gate.get("checks") or [])
    for cond in status.get("conditions") or []:
        lines.append(f"  {cond['type']:<10} {cond['status']:<5} {cond['reason']}: {cond.get('message', '')}")
    for entry in status.get("history") or []:
        lines.append(
            f"  history:   {entry['at']} {entry['result']} {entry['revision']} "
            f"v{entry.get('modelVersion', '')}: {entry.get('reason', '')}"
        )
        lines += _gate_checks(entry.get("gate") or [], indent="             ")
    return "\n".join(lines)


def _gate_checks(checks: list[dict[str, Any]], indent: str = "    ") -> list[str]:
    """One line per gate check: its value against its threshold, the verdict and why."""
    out = []
    for check in checks:
        value, threshold = check.get("value"), check.get("threshold")
        shown = f"{value:.4g}" if isinstance(value, int | float) else "-"
        bound = f" (threshold {threshold:.4g})" if isinstance(threshold, int | float) else ""
        out.append(
            f"{indent}check {check['name']} = {shown}{bound}: {check['verdict']} {check.get('message', '')}"
        )
    return out


def cmd_status(args: argparse.Namespace) -> int:
    print(format_status(_get(args, _namespace(args))))
    return 0


# ----------------------------------------------------------------------------------------- main


class DefaultsFormatter(argparse.HelpFormatter):
    """Shows `(default: X)` after a flag's help when X says something (not None, False or [])."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default not in (None, False, [], argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


ENVIRONMENT = """environment:
  KUBECONFIG             the kubeconfig, as for kubectl (--kubeconfig wins)
  MODELDEPLOY_NAMESPACES, MODELDEPLOY_LOG_FORMAT, MODELDEPLOY_PROMETHEUS_URL, MODELDEPLOY_PULLER_IMAGE,
  MODELDEPLOY_PROMETHEUS_ALLOW
                         defaults of `run`'s --namespace (comma-separated), --log-format,
                         --prometheus-url, --puller-image and --prometheus-allow (comma-separated)"""


def _cluster_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--kubeconfig", help="the kubeconfig (default: $KUBECONFIG, else ~/.kube/config)")
    command.add_argument("--context", help="the kubeconfig context (default: its current-context)")


PLUGIN = "kubectl modeldeploy"
# What a kubectl user does with ModelDeployments: look at one, steer its rollout, review a manifest.
# `run` (the operator: the chart's Deployment runs it) and `crd` (the chart installs the CRD; the
# plugin's own copy could differ from the operator's version on the cluster) are `modeldeploy`'s.
PLUGIN_VERBS = ("status", "promote", "abort", "retry", "pause", "resume", "render")
NOT_PLUGIN_VERBS = {
    "run": "it runs the operator, which the chart deploys; run it as `modeldeploy run`",
    "crd": "the chart installs the CRD; print it with `modeldeploy crd`",
}
PLUGIN_DESCRIPTION = (
    "`kubectl modeldeploy`: show and steer a ModelDeployment's rollout, render manifests offline."
)
PLUGIN_ENVIRONMENT = """environment:
  KUBECONFIG             the kubeconfig, as for kubectl (--kubeconfig wins)

The operator (`modeldeploy run`) and the CRD (`modeldeploy crd`) are not plugin verbs."""


def prog_name(argv0: str) -> str:
    # Installed as kubectl-modeldeploy, kubectl runs it as the plugin `kubectl modeldeploy`.
    return PLUGIN if Path(argv0).name == "kubectl-modeldeploy" else "modeldeploy"


def _run_flags(run: argparse.ArgumentParser) -> None:
    """The operator's own flags: what it watches, serves, asks and how it shares the cluster."""
    run.add_argument(
        "--namespace", action="append", help="watch this namespace (repeatable); default: every namespace"
    )
    run.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=os.environ.get("MODELDEPLOY_LOG_FORMAT", "text"),
        help="log lines as text, or one JSON object per line",
    )
    run.add_argument("--health-port", type=int, default=8080, help="serve /healthz here (0 turns it off)")
    run.add_argument("--metrics-port", type=int, default=9090, help="serve /metrics here (0 turns it off)")
    run.add_argument("--resync-seconds", type=float, default=60.0, help="period of the drift-healing pass")
    run.add_argument(
        "--prometheus-url",
        default=os.environ.get(
            "MODELDEPLOY_PROMETHEUS_URL", "http://prometheus-operated.monitoring.svc:9090"
        ),
        help="the Prometheus rollout analysis asks, unless a spec names its own",
    )
    run.add_argument(
        "--prometheus-allow",
        action="append",
        metavar="URL",
        help="a Prometheus base URL (scheme://host[:port][/path]) a spec's prometheusUrl may name "
        "(repeatable, or comma-separated; '*' allows any); default: only --prometheus-url",
    )
    run.add_argument(
        "--puller-image",
        default=os.environ.get("MODELDEPLOY_PULLER_IMAGE", DEFAULT_PULLER_IMAGE),
        help="image of the init container that downloads the model",
    )
    run.add_argument(
        "--pod-monitor-label",
        action="append",
        metavar="KEY=VALUE",
        help="label for every rendered PodMonitor and PrometheusRule, for your Prometheus's "
        "podMonitorSelector and ruleSelector (repeatable)",
    )
    run.add_argument(
        "--operator-namespace",
        default=os.environ.get("MODELDEPLOY_OPERATOR_NAMESPACE"),
        help="the operator's own namespace, which the Triton pods' NetworkPolicy admits on port 8000 "
        "when a ModelDeployment has gates (default: the pod's own namespace; outside a pod: none)",
    )
    run.add_argument(
        "--kube-qps",
        type=float,
        default=100.0,
        help="requests a second to the API server, on average (0: no limit)",
    )
    run.add_argument(
        "--kube-burst", type=int, default=200, help="requests to the API server at once, at most"
    )
    run.add_argument(
        "--leader-elect",
        action="store_true",
        help="reconcile only while holding a Lease: for two or more replicas (the chart turns it on)",
    )
    run.add_argument(
        "--leader-election-namespace", help="the Lease's namespace (default: the pod's own, else default)"
    )
    run.add_argument("--leader-election-id", default="modeldeploy", help="the Lease's name")
    run.add_argument(
        "--lease-duration", type=float, default=10.0, help="seconds a standby waits to take over"
    )
    run.add_argument("--renew-deadline", type=float, default=7.0, help="seconds a leader tries to renew")
    run.add_argument("--retry-period", type=float, default=2.0, help="seconds between Lease renewals")
    _cluster_flags(run)
    run.add_argument("-v", "--verbose", action="store_true", help="log every request and kopf's own lines")


def parser(prog: str = "modeldeploy") -> argparse.ArgumentParser:
    plugin = prog == PLUGIN
    top = argparse.ArgumentParser(
        prog=prog,
        description=PLUGIN_DESCRIPTION if plugin else __doc__,
        epilog=PLUGIN_ENVIRONMENT if plugin else ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"modeldeploy {__version__}")
    sub = top.add_subparsers(dest="command", required=True)

    def verb(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        # One definition for both programs; the plugin's parser never offers what is not its own (a
        # verb left out gets a parser that nothing reaches).
        if plugin and name not in PLUGIN_VERBS:
            return argparse.ArgumentParser(prog=name, add_help=False)
        made: argparse.ArgumentParser = sub.add_parser(name, **kwargs)
        return made

    run = verb("run", help="run the operator", formatter_class=DefaultsFormatter)
    _run_flags(run)
    run.set_defaults(func=cmd_run)

    render = verb(
        "render",
        help="print the child manifests of ModelDeployments, offline",
        formatter_class=DefaultsFormatter,
    )
    render.add_argument(
        "-f",
        "--file",
        required=True,
        action="append",
        help="a YAML or JSON file, a directory (its *.yaml, *.yml, *.json), or - for stdin (repeatable)",
    )
    render.add_argument("--no-pod-monitor", action="store_true", help="as if the PodMonitor CRD were absent")
    render.add_argument(
        "--no-prometheus-rule", action="store_true", help="as if the PrometheusRule CRD were absent"
    )
    render.add_argument("--puller-image", default=DEFAULT_PULLER_IMAGE, help="as `run --puller-image`")
    render.set_defaults(func=cmd_render)

    crd = verb("crd", help="print the CustomResourceDefinition, or write it with --output")
    crd.add_argument("-o", "--output", help="a file, or a directory to write " + CRD_FILENAME + " into")
    crd.set_defaults(func=cmd_crd)

    for name, (_, _, what) in CONTROL.items():
        control = verb(name, help=what, description=what)
        control.add_argument("name", help="the ModelDeployment")
        control.add_argument("-n", "--namespace", help="default: the kubeconfig context's namespace")
        _cluster_flags(control)
        control.set_defaults(func=cmd_control)
    status = verb("status", help="show a ModelDeployment's rollout, analysis and history")
    status.add_argument("name", help="the ModelDeployment")
    status.add_argument("-n", "--namespace", help="default: the kubeconfig context's namespace")
    _cluster_flags(status)
    status.set_defaults(func=cmd_status)

    return top


def main(argv: Sequence[str] | None = None) -> int:
    prog = prog_name(sys.argv[0])
    given = list(sys.argv[1:] if argv is None else argv)
    if prog == PLUGIN and given and given[0] in NOT_PLUGIN_VERBS:
        # argparse would answer "invalid choice"; say where the verb is instead.
        print(f"error: `{given[0]}` is not a {PLUGIN} verb: {NOT_PLUGIN_VERBS[given[0]]}", file=sys.stderr)
        return 2
    args = parser(prog).parse_args(given)
    try:
        result: int = args.func(args)
    except CliError as error:
        print(f"error: {one_line(str(error))}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
