"""Story tiers as configured (`stories.tiers`): which exist, which models each allows, and the one answer
for a tier that is unknown or switched off (404, the same words, so it confirms nothing)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mmstudio.config import StoriesConfig, TierConfig
from mmstudio.errors import InvalidRequest, NotFound

NOT_FOUND = "not found"


class Tiers:
    def __init__(self, config: StoriesConfig) -> None:
        self._tiers: Mapping[str, TierConfig] = config.tiers
        self.auto_save = config.auto_save

    def get(self, name: str) -> TierConfig:
        """An enabled tier; anything else is the same plain 404."""
        tier = self._tiers.get(name)
        if tier is None or not tier.enabled:
            raise NotFound(NOT_FOUND)
        return tier

    def enabled(self) -> list[str]:
        return [name for name, tier in self._tiers.items() if tier.enabled]


def check_allowed(model: str, allowed: Sequence[str], kind: str, field: str) -> None:
    """A model the tier does not allow is a 400 listing the ones it does (an empty list allows any)."""
    if allowed and model not in allowed:
        raise InvalidRequest(
            f"{model} is not a {kind} model this tier allows; allowed: {', '.join(allowed)}", field=field
        )
