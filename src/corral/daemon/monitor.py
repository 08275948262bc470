"""Compatibility name: the /proc sampler lives in :mod:`corral.daemon.sampler`."""

from corral.daemon.sampler import (
    HISTORY,
    PAGE,
    TICKS,
    ProcStat,
    TreeSampler,
    Usage,
    children_map,
    forget,
    pss_available,
    read_pss,
    read_stat,
    sample_tree,
    snapshot,
    tree,
    tree_pss,
)

__all__ = [
    "HISTORY", "PAGE", "TICKS", "ProcStat", "TreeSampler", "Usage", "children_map", "forget",
    "pss_available", "read_pss", "read_stat", "sample_tree", "snapshot", "tree", "tree_pss",
]
