"""The compare arena's leaderboard: Bradley-Terry ratings fitted to votes, on an Elo-like scale.

A vote over 2 to 4 models becomes pairwise outcomes: a winner beats each other model in the vote
(the losers are not ranked among themselves); "tie" and "both_bad" make every pair draw. Draws count
as half a win for each side. Strengths are fitted with Hunter's (2004) MM algorithm; each model also
gets one virtual draw against a virtual opponent of strength 1, a small prior that keeps undefeated
models and models in separate groups finite (and pins the scale). Ratings are
`1000 + 400 * log10(strength / geometric mean strength)`, so 1000 is the field's average and a
400-point gap means 10:1 odds.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from mmstudio.errors import InvalidRequest

TIE: Final = "tie"
BOTH_BAD: Final = "both_bad"
MIN_MODELS = 2
MAX_MODELS = 4
BASE_RATING = 1000.0
SCALE = 400.0
MAX_ITERATIONS = 1000
TOLERANCE = 1e-9
# Ratings closer than this share a rank; at one decimal this means "shown as the same number".
SAME_RATING = 0.05

_PRIOR_WINS = 0.5  # one virtual draw ...
_PRIOR_OPPONENT = 1.0  # ... against a virtual opponent of strength 1


@dataclass(frozen=True)
class Vote:
    """One arena verdict; checked when made, so a `Vote` in hand is always valid."""

    models: tuple[str, ...]  # the 2 to 4 model ids that were compared
    winner: str  # one of `models`, "tie" or "both_bad"

    def __post_init__(self) -> None:
        # Callers building votes from JSON pass lists; the vote must stay hashable and immutable.
        object.__setattr__(self, "models", tuple(self.models))
        if not MIN_MODELS <= len(self.models) <= MAX_MODELS:
            raise InvalidRequest(
                f"a vote compares {MIN_MODELS} to {MAX_MODELS} models; got {len(self.models)}", field="models"
            )
        if any(not isinstance(m, str) or not m for m in self.models):
            raise InvalidRequest("model ids in a vote must be non-empty strings", field="models")
        duplicates = sorted(m for m, n in Counter(self.models).items() if n > 1)
        if duplicates:
            raise InvalidRequest(
                f"a vote lists the same model more than once: {', '.join(duplicates)}", field="models"
            )
        reserved = {TIE, BOTH_BAD} & set(self.models)
        if reserved:
            raise InvalidRequest(
                f"{', '.join(sorted(reserved))} cannot be a model id in a vote: it is a verdict",
                field="models",
            )
        if self.winner not in (*self.models, TIE, BOTH_BAD):
            raise InvalidRequest(
                f"the winner {self.winner!r} is not one of the models compared "
                f"({', '.join(self.models)}), {TIE!r} or {BOTH_BAD!r}",
                field="winner",
            )


@dataclass(frozen=True)
class Outcome:
    """One pairwise result: `first` scored `score` against `second` (1 a win, 0.5 a draw)."""

    first: str
    second: str
    score: float


@dataclass(frozen=True)
class Standing:
    rank: int  # competition ranking: equal ratings share a rank and the next rank is skipped (1, 1, 3)
    model: str
    rating: float  # rounded to one decimal
    votes: int  # votes the model took part in
    wins: int  # votes it won
    losses: int  # votes another model won
    ties: int
    both_bad: int
    win_rate: float  # wins / votes


def outcomes(vote: Vote) -> list[Outcome]:
    """The pairwise outcomes a vote stands for."""
    if vote.winner in (TIE, BOTH_BAD):
        return [Outcome(a, b, 0.5) for a, b in itertools.combinations(vote.models, 2)]
    return [Outcome(vote.winner, other, 1.0) for other in vote.models if other != vote.winner]


def rank(votes: Iterable[Vote]) -> list[Standing]:
    """The leaderboard: every model that appears in a vote, best first."""
    votes = list(votes)
    if not votes:
        return []
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    # Scores and pair counts are sums of halves and ones, exact in floating point, so the fit (and
    # the leaderboard) does not depend on the order the votes arrive in.
    score: dict[str, float] = defaultdict(float)
    games: dict[tuple[str, str], int] = defaultdict(int)
    for vote in votes:
        _tally(vote, counts)
        for outcome in outcomes(vote):
            score[outcome.first] += outcome.score
            score[outcome.second] += 1.0 - outcome.score
            games[_pair(outcome.first, outcome.second)] += 1
    models = sorted(counts)
    strengths = _fit(models, score, games)
    log_mean = sum(math.log(s) for s in strengths.values()) / len(strengths)
    # Rounded twice: models the fit made equal up to floating-point noise must show the same number.
    rows = [(round(round(_rating(strengths[m], log_mean), 6), 1), m) for m in models]
    rows.sort(key=lambda row: (-row[0], row[1]))
    standings: list[Standing] = []
    for position, (rating, model) in enumerate(rows, start=1):
        shared = standings and abs(standings[-1].rating - rating) < SAME_RATING
        c = counts[model]
        standings.append(
            Standing(
                rank=standings[-1].rank if shared else position,
                model=model,
                rating=rating,
                votes=c["votes"],
                wins=c["wins"],
                losses=c["losses"],
                ties=c["ties"],
                both_bad=c["both_bad"],
                win_rate=c["wins"] / c["votes"] if c["votes"] else 0.0,
            )
        )
    return standings


def _rating(strength: float, log_mean: float) -> float:
    return BASE_RATING + SCALE * (math.log(strength) - log_mean) / math.log(10)


def _tally(vote: Vote, counts: dict[str, Counter[str]]) -> None:
    for model in vote.models:
        c = counts[model]
        c["votes"] += 1
        if vote.winner == TIE:
            c["ties"] += 1
        elif vote.winner == BOTH_BAD:
            c["both_bad"] += 1
        elif vote.winner == model:
            c["wins"] += 1
        else:
            c["losses"] += 1


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def _fit(models: list[str], score: dict[str, float], games: dict[tuple[str, str], int]) -> dict[str, float]:
    """Bradley-Terry strengths by minorization-maximization (Hunter 2004), with the prior above."""
    opponents: dict[str, list[tuple[str, int]]] = {m: [] for m in models}
    for (a, b), n in sorted(games.items()):
        opponents[a].append((b, n))
        opponents[b].append((a, n))
    strength = dict.fromkeys(models, 1.0)
    for _ in range(MAX_ITERATIONS):
        updated = {}
        for m in models:
            denominator = 1.0 / (strength[m] + _PRIOR_OPPONENT) + sum(
                n / (strength[m] + strength[o]) for o, n in opponents[m]
            )
            updated[m] = (score[m] + _PRIOR_WINS) / denominator
        change = max(abs(updated[m] - strength[m]) / strength[m] for m in models)
        strength = updated
        if change < TOLERANCE:
            break
    return strength
