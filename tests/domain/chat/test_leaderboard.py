"""The arena leaderboard: vote validation, pairwise expansion, Bradley-Terry ratings and ranking."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmstudio.domain.chat.leaderboard import (
    BASE_RATING,
    Outcome,
    Standing,
    Vote,
    outcomes,
    rank,
)
from mmstudio.errors import InvalidRequest


def by_model(standings: list[Standing]) -> dict[str, Standing]:
    return {s.model: s for s in standings}


# --- votes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("models", "winner", "field", "message"),
    [
        (("a",), "a", "models", "a vote compares 2 to 4 models; got 1"),
        ((), "tie", "models", "a vote compares 2 to 4 models; got 0"),
        (("a", "b", "c", "d", "e"), "a", "models", "a vote compares 2 to 4 models; got 5"),
        (("a", "b", "a"), "a", "models", "the same model more than once: a"),
        (("a", ""), "a", "models", "non-empty strings"),
        (("a", "tie"), "a", "models", "tie cannot be a model id"),
        (
            ("a", "b"),
            "c",
            "winner",
            "the winner 'c' is not one of the models compared (a, b), 'tie' or 'both_bad'",
        ),
        (("a", "b"), "", "winner", "the winner '' is not one of the models"),
        (("a", "b"), "Tie", "winner", "the winner 'Tie' is not one of the models"),
    ],
)
def test_invalid_votes_are_rejected(models: tuple[str, ...], winner: str, field: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        Vote(models, winner)
    assert message in str(caught.value)
    assert caught.value.field == field


def test_models_given_as_a_list_become_a_tuple() -> None:
    vote = Vote(["a", "b"], "a")  # type: ignore[arg-type]
    assert vote.models == ("a", "b")
    assert hash(vote) == hash(Vote(("a", "b"), "a"))


def test_a_winner_beats_every_other_model_of_a_four_model_vote() -> None:
    assert outcomes(Vote(("a", "b", "c", "d"), "c")) == [
        Outcome("c", "a", 1.0),
        Outcome("c", "b", 1.0),
        Outcome("c", "d", 1.0),
    ]


@pytest.mark.parametrize("verdict", ["tie", "both_bad"])
def test_tie_and_both_bad_make_every_pair_draw(verdict: str) -> None:
    assert outcomes(Vote(("a", "b", "c", "d"), verdict)) == [
        Outcome("a", "b", 0.5),
        Outcome("a", "c", 0.5),
        Outcome("a", "d", 0.5),
        Outcome("b", "c", 0.5),
        Outcome("b", "d", 0.5),
        Outcome("c", "d", 0.5),
    ]


# --- ranking ------------------------------------------------------------------------------------


def test_no_votes_no_standings() -> None:
    assert rank([]) == []


def test_a_clear_winner_ranks_first() -> None:
    votes = (
        [Vote(("strong", "medium"), "strong")] * 8
        + [Vote(("medium", "strong"), "medium")] * 2
        + [Vote(("medium", "weak"), "medium")] * 8
        + [Vote(("weak", "medium"), "weak")] * 2
        + [Vote(("strong", "weak"), "strong")] * 5
    )
    standings = rank(votes)
    assert [(s.rank, s.model) for s in standings] == [(1, "strong"), (2, "medium"), (3, "weak")]
    ratings = [s.rating for s in standings]
    assert ratings[0] > BASE_RATING > ratings[2]
    # 8:2 is odds of 4:1, about 240 points on the 400-point scale (the prior pulls it in a little).
    assert 150 < ratings[0] - ratings[1] < 260


def test_ratings_are_centred_on_the_base_rating() -> None:
    standings = rank([Vote(("a", "b"), "a")] * 3 + [Vote(("b", "c"), "b")] * 3)
    log_ratio = [(s.rating - BASE_RATING) / 400 for s in standings]
    assert sum(log_ratio) == pytest.approx(0, abs=0.01)  # the geometric mean strength rates 1000


def test_symmetric_results_tie_and_share_a_rank() -> None:
    # a and b split their games and both beat c once.
    votes = [Vote(("a", "b"), "a"), Vote(("a", "b"), "b"), Vote(("b", "c"), "b"), Vote(("a", "c"), "a")]
    standings = rank(votes)
    assert [(s.rank, s.model) for s in standings] == [(1, "a"), (1, "b"), (3, "c")]
    assert standings[0].rating == standings[1].rating


def test_all_ties_rate_everyone_the_same() -> None:
    standings = rank([Vote(("x", "y", "z"), "tie"), Vote(("x", "y"), "both_bad")])
    assert {s.rating for s in standings} == {1000.0}
    assert [(s.rank, s.model) for s in standings] == [(1, "x"), (1, "y"), (1, "z")]


def test_an_undefeated_model_has_a_finite_rating() -> None:
    standings = by_model(rank([Vote(("champ", "other"), "champ")] * 50))
    assert math.isfinite(standings["champ"].rating)
    assert math.isfinite(standings["other"].rating)
    assert standings["champ"].rating > standings["other"].rating
    assert standings["champ"].rank == 1


def test_disconnected_groups_stay_finite() -> None:
    standings = by_model(rank([Vote(("a", "b"), "a")] * 5 + [Vote(("c", "d"), "c")] * 5))
    assert all(math.isfinite(s.rating) for s in standings.values())
    assert standings["a"].rating == standings["c"].rating
    assert standings["a"].rank == standings["c"].rank == 1
    assert standings["b"].rank == standings["d"].rank == 3


def test_more_evidence_moves_a_rating_further() -> None:
    one = by_model(rank([Vote(("a", "b"), "a")]))
    many = by_model(rank([Vote(("a", "b"), "a")] * 20))
    assert BASE_RATING < one["a"].rating < many["a"].rating


def test_counts_and_win_rate() -> None:
    votes = [
        Vote(("a", "b"), "a"),
        Vote(("a", "b", "c"), "b"),
        Vote(("a", "c"), "tie"),
        Vote(("a", "b", "c", "d"), "both_bad"),
        Vote(("c", "d"), "d"),
    ]
    s = by_model(rank(votes))
    assert (s["a"].votes, s["a"].wins, s["a"].losses, s["a"].ties, s["a"].both_bad) == (4, 1, 1, 1, 1)
    assert (s["b"].votes, s["b"].wins, s["b"].losses, s["b"].ties, s["b"].both_bad) == (3, 1, 1, 0, 1)
    assert (s["c"].votes, s["c"].wins, s["c"].losses, s["c"].ties, s["c"].both_bad) == (4, 0, 2, 1, 1)
    assert (s["d"].votes, s["d"].wins, s["d"].losses, s["d"].ties, s["d"].both_bad) == (2, 1, 0, 0, 1)
    assert s["a"].win_rate == 0.25
    assert s["c"].win_rate == 0.0
    assert s["d"].win_rate == 0.5


def test_a_four_model_win_counts_as_beating_all_three_others() -> None:
    standings = rank([Vote(("a", "b", "c", "d"), "a")] * 3)
    ranked = [(s.rank, s.model) for s in standings]
    # The losers were not ranked among themselves, so they stay level.
    assert ranked == [(1, "a"), (2, "b"), (2, "c"), (2, "d")]
    assert by_model(standings)["a"].wins == 3
    assert by_model(standings)["b"].losses == 3


def test_both_bad_is_a_draw_for_the_rating() -> None:
    as_ties = rank([Vote(("a", "b"), "a"), Vote(("a", "b"), "tie"), Vote(("b", "c"), "tie")])
    as_both_bad = rank([Vote(("a", "b"), "a"), Vote(("a", "b"), "both_bad"), Vote(("b", "c"), "both_bad")])
    assert [(s.model, s.rating) for s in as_ties] == [(s.model, s.rating) for s in as_both_bad]
    assert [s.ties for s in as_ties] == [s.both_bad for s in as_both_bad]


def test_ratings_are_rounded_to_one_decimal() -> None:
    for s in rank([Vote(("a", "b"), "a")] * 3 + [Vote(("b", "c"), "b")] + [Vote(("a", "c"), "c")]):
        assert s.rating == round(s.rating, 1)


def test_ties_are_ordered_by_model_id_and_ranks_skip() -> None:
    standings = rank([Vote(("zeta", "alpha", "mid"), "tie")])
    assert [s.model for s in standings] == ["alpha", "mid", "zeta"]
    votes = [
        Vote(("top", "zeta"), "top"),
        Vote(("top", "alpha"), "top"),
        Vote(("alpha", "zeta"), "tie"),
        Vote(("alpha", "last"), "alpha"),
        Vote(("zeta", "last"), "zeta"),
    ]
    standings = rank(votes)
    assert [(s.rank, s.model) for s in standings] == [(1, "top"), (2, "alpha"), (2, "zeta"), (4, "last")]


def test_the_fit_matches_a_known_bradley_terry_solution() -> None:
    # a wins 3 of 4 against b; with the prior each also draws once against a strength-1 opponent.
    standings = by_model(rank([Vote(("a", "b"), "a")] * 3 + [Vote(("a", "b"), "b")]))
    gap = standings["a"].rating - standings["b"].rating
    ratio = 10 ** (gap / 400)
    # The MM equations solved independently: p = (score + 1/2) / (sum of n / (p + p_opponent)).
    p_a, p_b = 1.0, 1.0
    for _ in range(10_000):
        p_a = 3.5 / (4 / (p_a + p_b) + 1 / (p_a + 1))
        p_b = 1.5 / (4 / (p_a + p_b) + 1 / (p_b + 1))
    assert ratio == pytest.approx(p_a / p_b, rel=1e-3)
    assert 1 < ratio < 3  # pulled in from the raw 3:1 by the prior


_MODELS = ["m1", "m2", "m3", "m4", "m5", "m6"]


@st.composite
def _votes(draw: st.DrawFn) -> list[Vote]:
    result = []
    for _ in range(draw(st.integers(1, 40))):
        models = draw(st.lists(st.sampled_from(_MODELS), min_size=2, max_size=4, unique=True))
        winner = draw(st.sampled_from([*models, "tie", "both_bad"]))
        result.append(Vote(tuple(models), winner))
    return result


@settings(max_examples=100, deadline=None)
@given(votes=_votes(), seed=st.integers(0, 2**32))
def test_ratings_are_finite_and_independent_of_vote_order(votes: list[Vote], seed: int) -> None:
    standings = rank(votes)
    shuffled = list(votes)
    random.Random(seed).shuffle(shuffled)
    assert rank(shuffled) == standings
    assert all(math.isfinite(s.rating) for s in standings)
    assert {s.model for s in standings} == {m for v in votes for m in v.models}
    assert sum(s.votes for s in standings) == sum(len(v.models) for v in votes)
    assert sum(s.wins for s in standings) == sum(v.winner in v.models for v in votes)
    for s in standings:
        assert s.wins + s.losses + s.ties + s.both_bad == s.votes
    # Sorted best first; ranks are competition ranks.
    assert [s.rating for s in standings] == sorted((s.rating for s in standings), reverse=True)
    for position, s in enumerate(standings, start=1):
        earlier = [t for t in standings[: position - 1] if t.rating == s.rating]
        assert s.rank == (earlier[0].rank if earlier else position)


@settings(max_examples=50, deadline=None)
@given(votes=_votes())
def test_renaming_models_does_not_change_ratings(votes: list[Vote]) -> None:
    renamed = [
        Vote(
            tuple(f"x-{m}" for m in v.models),
            v.winner if v.winner in ("tie", "both_bad") else f"x-{v.winner}",
        )
        for v in votes
    ]
    assert [s.rating for s in rank(votes)] == [s.rating for s in rank(renamed)]
