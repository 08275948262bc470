"""Compatibility names: resource sampling lives in :mod:`corral.daemon.resources`,
health probes in :mod:`corral.daemon.health`."""

from corral.daemon.health import HealthManager, health_view
from corral.daemon.resources import FAST_INTERVAL, SLOW_INTERVAL, ResourceMonitor, UsageMonitor

__all__ = ["FAST_INTERVAL", "SLOW_INTERVAL", "HealthManager", "ResourceMonitor", "UsageMonitor", "health_view"]
