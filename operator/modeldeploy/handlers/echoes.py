"""Recognise the watch events our own writes cause, so that they do not wake another pass.

Every apply and status patch comes back as a watch event. Left alone, each starts a pass that
finds nothing to do; measured in bench/, that was three of every four passes for a new object.
An event is an echo when it carries exactly the resourceVersion one of our writes returned; for a
ModelDeployment it must also still show the generation and annotations the pass acted on, since
kopf batches events and a user's edit may hide behind our write.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

_LIMIT = 8192


def _digest(annotations: Mapping[str, Any] | None) -> str:
    encoded = json.dumps(dict(annotations or {}), sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def _key(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    meta = obj.get("metadata") or {}
    uid, version = meta.get("uid"), meta.get("resourceVersion")
    return (str(uid), str(version)) if uid and version else None


class Echoes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, str], tuple[int, str] | None] = OrderedDict()

    def wrote(self, result: Mapping[str, Any], acted_on: Mapping[str, Any] | None = None) -> None:
        """Remember a write's result; `acted_on` is the ModelDeployment body the pass started from."""
        key = _key(result)
        if key is None:
            return
        stamp = None
        if acted_on is not None:
            meta = acted_on.get("metadata") or {}
            stamp = (int(meta.get("generation") or 0), _digest(meta.get("annotations")))
        with self._lock:
            self._seen[key] = stamp
            while len(self._seen) > _LIMIT:
                self._seen.popitem(last=False)

    def is_echo(self, body: Mapping[str, Any]) -> bool:
        key = _key(body)
        if key is None:
            return False
        with self._lock:
            if key not in self._seen:
                return False
            stamp = self._seen[key]
        if stamp is None:
            return True
        meta = body.get("metadata") or {}
        return stamp == (int(meta.get("generation") or 0), _digest(meta.get("annotations")))
