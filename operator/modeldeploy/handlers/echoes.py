"""Recognise the watch events our own writes cause, so that they do not wake another pass.

Every apply and status patch comes back as a watch event. Left alone, each starts a pass that
finds nothing to do; measured in bench/, that was three of every four passes for a new object.
An event is an echo when it carries exactly the resourceVersion one of our writes returned; for a
ModelDeployment it must also still show the generation and annotations the pass acted on, since
kopf batches events and a user's edit may hide behind our write.

The cache can lag behind our own writes (kopf has not yet delivered the echo), so a later pass may
read an older version of a child than the one we wrote, and decide from it. An echo is not skipped
when a pass read that child at another version since our write: the pass the echo wakes then
decides again from the version we wrote.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

_LIMIT = 16384


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
        self._written: OrderedDict[str, str] = OrderedDict()  # uid -> resourceVersion we last wrote
        self._doubtful: set[str] = set()  # uids a pass read at another version since our write

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
            self._written[key[0]] = key[1]
            self._written.move_to_end(key[0])
            self._doubtful.discard(key[0])
            while len(self._seen) > _LIMIT:
                self._seen.popitem(last=False)
            while len(self._written) > _LIMIT:
                self._doubtful.discard(self._written.popitem(last=False)[0])

    def last_written(self, obj: Mapping[str, Any]) -> str | None:
        """The resourceVersion our last write of this object returned, if we remember one."""
        uid = (obj.get("metadata") or {}).get("uid")
        with self._lock:
            return self._written.get(str(uid)) if uid else None

    def behind(self, obj: Mapping[str, Any]) -> bool:
        """Whether `obj` (a cached copy) is older than the version our last write of it returned.
        Resource versions are etcd revisions, which Kubernetes lets clients compare as integers
        (KEP-5504, stable in 1.35); one that is not an integer is never called older."""
        written = self.last_written(obj)
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if written is None or not (written.isdigit() and version.isdigit()):
            return False
        return int(version) < int(written)

    def read(self, obj: Mapping[str, Any]) -> None:
        """A pass read `obj` (from the cache): remember when that is not the version we wrote."""
        key = _key(obj)
        if key is None:
            return
        with self._lock:
            written = self._written.get(key[0])
            if written is not None and written != key[1]:
                self._doubtful.add(key[0])

    def is_echo(self, body: Mapping[str, Any]) -> bool:
        key = _key(body)
        if key is None:
            return False
        with self._lock:
            if key not in self._seen:
                return False
            if key[0] in self._doubtful:
                self._doubtful.discard(key[0])
                return False  # a pass decided from an older copy meanwhile: let this one decide again
            stamp = self._seen[key]
        if stamp is None:
            return True
        meta = body.get("metadata") or {}
        return stamp == (int(meta.get("generation") or 0), _digest(meta.get("annotations")))
