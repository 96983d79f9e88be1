"""Which objects are ours, and which names two ModelDeployments would both claim.

Only what is ours is written or deleted: an object is a ModelDeployment's child when it carries
that object's controller ownerReference, matched by uid (a ModelDeployment deleted and made again
under the same name is another owner). Anything else of the same name is a conflict to report,
never something to take over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modeldeploy.api.base import RESERVED_NAME_SUFFIXES, RESERVED_SUFFIX_MESSAGE
from modeldeploy.render.names import Track


def reserved_suffix(name: str) -> str | None:
    """Why `name` may not name a ModelDeployment, else None."""
    return RESERVED_SUFFIX_MESSAGE if name.endswith(RESERVED_NAME_SUFFIXES) else None


def controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The controller ownerReference of `obj`, if any (Kubernetes allows at most one)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return ref
    return None


def is_ours(obj: Mapping[str, Any], uid: str) -> bool:
    """True when `obj` is a child of the ModelDeployment with this uid: its controller, by uid."""
    ref = controller_of(obj)
    return ref is not None and bool(uid) and ref.get("uid") == uid


def owner_of(obj: Mapping[str, Any]) -> str:
    """Who holds `obj`, for a person to find it: its controller, else its field managers."""
    ref = controller_of(obj)
    if ref is not None:
        return f"owned by {ref.get('kind') or '?'} {ref.get('name') or '?'} (uid {ref.get('uid') or '?'})"
    managers = sorted(
        {
            str(entry.get("manager"))
            for entry in (obj.get("metadata") or {}).get("managedFields") or []
            if isinstance(entry, Mapping) and entry.get("manager")
        }
    )
    return f"no owner, managed by {', '.join(managers)}" if managers else "no owner"


def conflict_message(kind: str, name: str, obj: Mapping[str, Any]) -> str:
    """One line for status: what exists, who holds it, and that the operator leaves it alone."""
    return f"{kind}/{name}: exists and is not this ModelDeployment's ({owner_of(obj)}); left as it is"


def child_names(name: str) -> set[tuple[str, str]]:
    """(kind, name) of every object a ModelDeployment called `name` may ever create, whatever its
    spec: both tracks, every router."""
    tracks = [f"{name}-{track.value}" for track in Track]
    return {
        *(("Deployment", n) for n in tracks),
        *(("Service", n) for n in [name, *tracks]),
        ("HorizontalPodAutoscaler", name),
        ("NetworkPolicy", name),
        ("PodMonitor", name),
        ("PrometheusRule", name),
        ("HTTPRoute", name),
        ("GRPCRoute", f"{name}-grpc"),
        ("VirtualService", name),
    }


def collisions(sources: Iterable[tuple[str, str, str]]) -> list[str]:
    """One line per pair of ModelDeployments, given as (namespace, name, where it is defined), whose
    children would share a kind, namespace and name; each line names both and what they share."""
    claimed: dict[tuple[str, str, str], tuple[str, str]] = {}
    shared: dict[tuple[str, str, str, str], list[str]] = {}
    for namespace, name, where in sources:
        for kind, child in sorted(child_names(name)):
            first, first_where = claimed.setdefault((namespace, kind, child), (name, where))
            if first != name:
                shared.setdefault((first, first_where, name, where), []).append(f"{kind} {namespace}/{child}")
    return [
        f"ModelDeployment {a} ({a_where}) and ModelDeployment {b} ({b_where}) "
        f"would both own {', '.join(objs)}"
        for (a, a_where, b, b_where), objs in shared.items()
    ]
