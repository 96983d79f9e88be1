"""Rollout arithmetic: how many canary pods a step needs, and what that costs in GPUs."""

from __future__ import annotations

import math


def routed_canary_replicas(primary: int, weight: int) -> int:
    """With a router the traffic split is exact; the canary needs capacity for its share only."""
    if weight <= 0:
        return 1
    return max(1, math.ceil(primary * weight / 100))


def ratio_canary_replicas(primary: int, weight: int) -> int:
    """Without a router the split is the share of pods behind one Service: canary/(primary+canary).

    The primary keeps its size (the HPA owns it), so the canary gets the smallest count whose
    share reaches the weight; 100% means the primary's size again.
    """
    if weight <= 0:
        return 0
    if weight >= 100:
        return max(1, primary)
    return max(1, math.ceil(primary * weight / (100 - weight)))


def effective_ratio_weight(primary: int, canary: int) -> int:
    """The share of traffic a replica-ratio split really gives the canary, in percent."""
    total = primary + canary
    return 0 if total == 0 else round(100 * canary / total)


def extra_gpus(canary_replicas: int, gpus_per_pod: int) -> int:
    return canary_replicas * gpus_per_pod
