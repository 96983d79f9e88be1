"""Traffic routers: one module per router behind one small interface (base.Router)."""

from modeldeploy.routing.base import STEADY, Router, Split
from modeldeploy.routing.registry import ROUTERS, router_for

__all__ = ["ROUTERS", "STEADY", "Router", "Split", "router_for"]
