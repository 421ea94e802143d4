"""The `track` settings of one policy, from params['track'] (the schema is in `mimic_core.config`)."""
from __future__ import annotations

from typing import Any, Mapping

from mimic_core.config import TrackConfig, TrackSection, validate


def track_section(track: Mapping[str, Any]) -> TrackSection:
    """params['track'] checked, its profile applied (every profile checked merged over the base)."""
    return validate(TrackSection, track, "track")


def track_config(track: Mapping[str, Any], ctrl_cost_weight: float = 0.0) -> TrackConfig:
    """The checked config of one policy from params['track'] (profile applied)."""
    return track_section(track).policy(ctrl_cost_weight)


def ctrl_cost_weights(track: Mapping[str, Any]) -> list:
    """The sweep of control-cost weights, as written in params (keys of the reports)."""
    return list(track_section(track).ctrl_cost_weights)


# `bench.throughput` calls it to name an unknown profile before anything else.
resolve_profile = track_section
