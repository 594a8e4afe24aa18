"""Rate limits: exact under concurrency in process and through Redis (across OS processes), fail-open."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mmstudio.config import Limits, RateLimit
from mmstudio.domain.ratelimit import RateLimiter, Subject
from mmstudio.errors import ConfigError, RateLimited
from tests.fakes.base import closed_port

HITS_SCRIPT = Path(__file__).with_name("ratelimit_hits.py")

MakeLimiter = Callable[..., RateLimiter]


@pytest.fixture
async def make_limiter() -> AsyncIterator[MakeLimiter]:
    """`make_limiter(limits, redis_url=None)`; every limiter made is closed afterwards."""
    made: list[RateLimiter] = []

    def make(limits: Limits, redis_url: str | None = None) -> RateLimiter:
        made.append(RateLimiter(limits, redis_url))
        return made[-1]

    yield make
    for limiter in made:
        await limiter.close()


def subject_of(limiter: RateLimiter, key_id: str) -> Subject:
    subject = limiter.for_key(key_id)
    assert subject is not None
    return subject


async def burst(limiter: RateLimiter, subject: Subject, hits: int) -> tuple[int, list[RateLimited]]:
    results = await asyncio.gather(*(limiter.hit(subject) for _ in range(hits)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert all(r is None or isinstance(r, RateLimited) for r in results), results
    return sum(r is None for r in results), refused


async def admitted(limiter: RateLimiter, subject: Subject) -> bool:
    try:
        await limiter.hit(subject)
    except RateLimited:
        return False
    return True


# -- in process ----------------------------------------------------------------------------


async def test_500_concurrent_hits_against_100_rpm_admit_exactly_100(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(per_key=RateLimit(rpm=100)))
    ok, refused = await burst(limiter, subject_of(limiter, "ci-bot"), 500)
    assert (ok, len(refused)) == (100, 400)
    for error in refused:
        assert 1 <= error.retry_after <= 60
        assert error.message.startswith("Rate limit reached for key 'ci-bot': 100 requests per minute.")
        assert error.message.endswith(f"Retry in {error.retry_after} s.")


async def test_the_window_moves_and_retry_after_says_when_a_slot_frees(
    make_limiter: MakeLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [time.time()]
    monkeypatch.setattr(time, "time", lambda: now[0])
    limiter = make_limiter(Limits(per_key=RateLimit(rpm=3)))
    subject = subject_of(limiter, "k")
    start = now[0]
    for offset in (0, 10, 20):  # one request at t=0, 10 and 20 s
        now[0] = start + offset
        await limiter.hit(subject)
    now[0] = start + 50  # the t=0 request leaves the window at t=60
    with pytest.raises(RateLimited) as refused:
        await limiter.hit(subject)
    assert refused.value.retry_after == 10
    now[0] = start + 60.5  # only the t=0 request has left (a fixed window would have reset all three)
    await limiter.hit(subject)
    with pytest.raises(RateLimited) as refused:
        await limiter.hit(subject)
    assert refused.value.retry_after == 10  # the t=10 request leaves at t=70


async def test_a_key_override_falls_back_field_by_field_to_per_key(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(per_key=RateLimit(rpm=100, tpm=5000)))
    assert limiter.for_key("plain") == Subject("key", "plain", RateLimit(rpm=100, tpm=5000))
    assert limiter.for_key("fast", RateLimit(rpm=1000)) == Subject(
        "key", "fast", RateLimit(rpm=1000, tpm=5000)
    )
    assert limiter.for_key("t", RateLimit(tpm=10)) == Subject("key", "t", RateLimit(rpm=100, tpm=10))

    tight = limiter.for_key("tight", RateLimit(rpm=2))
    assert tight is not None
    assert [await admitted(limiter, tight) for _ in range(3)] == [True, True, False]
    assert await admitted(limiter, subject_of(limiter, "plain"))


async def test_nothing_configured_means_no_subject(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits())
    assert limiter.for_key("k") is None
    assert limiter.for_model("ollama/llama3.2") is None
    assert limiter.for_user("u1", RateLimit()) is None
    assert limiter.for_user("u1", RateLimit(rpm=100)) == Subject("user", "u1", RateLimit(rpm=100))
    assert limiter.for_key("k", RateLimit(tpm=7)) == Subject("key", "k", RateLimit(tpm=7))


async def test_per_model_limits_come_from_limits_models_then_per_model(make_limiter: MakeLimiter) -> None:
    limits = Limits(
        per_model=RateLimit(rpm=60, tpm=100_000),
        models={"openai/gpt-4o": RateLimit(tpm=40_000), "ollama/tiny": RateLimit(rpm=1)},
    )
    limiter = make_limiter(limits)
    assert limiter.for_model("openai/gpt-4o") == Subject(
        "model", "openai/gpt-4o", RateLimit(rpm=60, tpm=40_000)
    )
    assert limiter.for_model("other/m") == Subject("model", "other/m", RateLimit(rpm=60, tpm=100_000))
    tiny = limiter.for_model("ollama/tiny")
    assert tiny is not None
    assert [await admitted(limiter, tiny) for _ in range(2)] == [True, False]
    assert limiter.for_key("k") is None  # model limits are not key limits


async def test_subjects_do_not_share_counters_even_with_the_same_id(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(per_key=RateLimit(rpm=1), per_model=RateLimit(rpm=1)))
    a, b = subject_of(limiter, "a"), subject_of(limiter, "b")
    model_a = limiter.for_model("a")
    assert model_a is not None
    assert await admitted(limiter, a)
    assert not await admitted(limiter, a)
    assert await admitted(limiter, b)
    assert await admitted(limiter, model_a)
    assert await admitted(limiter, Subject("user", "a", RateLimit(rpm=1)))


async def test_tokens_per_minute_refuse_once_reached(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(models={"openai/gpt-4o": RateLimit(tpm=40_000)}))
    model = limiter.for_model("openai/gpt-4o")
    assert model is not None
    await limiter.hit(model)
    await limiter.add_tokens(model, 39_999)
    await limiter.hit(model)  # one more token still fits
    await limiter.add_tokens(model, 1)
    with pytest.raises(RateLimited) as refused:
        await limiter.hit(model)
    assert refused.value.message == (
        "Rate limit reached for model 'openai/gpt-4o': 40000 tokens per minute. "
        f"Retry in {refused.value.retry_after} s."
    )
    assert 1 <= refused.value.retry_after <= 60


async def test_one_response_may_overshoot_tpm_and_the_next_hit_is_refused(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(per_key=RateLimit(rpm=10, tpm=1000)))
    key = subject_of(limiter, "k")
    await limiter.hit(key)
    await limiter.add_tokens(key, 700)
    await limiter.add_tokens(key, 5000)  # more than the whole window
    with pytest.raises(RateLimited, match="1000 tokens per minute"):
        await limiter.hit(key)


async def test_large_token_limits_are_counted_in_bounded_units(make_limiter: MakeLimiter) -> None:
    # 2M tpm is stored as 100,000 entries of 20 tokens, not 2M entries; whole units stay exact.
    limiter = make_limiter(Limits(per_key=RateLimit(tpm=2_000_000)))
    key = subject_of(limiter, "big")
    await limiter.add_tokens(key, 1_999_800)
    await limiter.hit(key)
    await limiter.add_tokens(key, 200)
    with pytest.raises(RateLimited, match="2000000 tokens per minute"):
        await limiter.hit(key)


async def test_a_bad_redis_url_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as error:
        RateLimiter(Limits(), "http://user:hunter22secret@redis.internal:6379/0")
    assert "hunter22secret" not in error.value.message
    assert "redis.internal:6379" in error.value.message


# -- through Redis -------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_admits_exactly_the_limit_under_concurrency(
    make_limiter: MakeLimiter, fresh_redis_url: str
) -> None:
    limiter = make_limiter(Limits(per_key=RateLimit(rpm=100), per_model=RateLimit(tpm=50)), fresh_redis_url)
    ok, refused = await burst(limiter, subject_of(limiter, "ci-bot"), 500)
    assert (ok, len(refused)) == (100, 400)
    assert all(1 <= e.retry_after <= 60 and "100 requests per minute" in e.message for e in refused)

    model = limiter.for_model("openai/gpt-4o")
    assert model is not None
    await limiter.hit(model)
    await limiter.add_tokens(model, 50)
    with pytest.raises(RateLimited, match="model 'openai/gpt-4o': 50 tokens per minute"):
        await limiter.hit(model)


@pytest.mark.redis
async def test_two_processes_sharing_redis_admit_exactly_100_of_500(fresh_redis_url: str) -> None:
    command = [sys.executable, str(HITS_SCRIPT), fresh_redis_url, "100", "250"]
    pipe = asyncio.subprocess.PIPE
    workers = [await asyncio.create_subprocess_exec(*command, stdin=pipe, stdout=pipe) for _ in range(2)]
    try:
        for worker in workers:  # both are connected before either fires
            assert worker.stdout is not None
            assert await asyncio.wait_for(worker.stdout.readline(), 30) == b"ready\n"
        start = f"{time.time() + 0.2}\n".encode()
        outputs = await asyncio.wait_for(asyncio.gather(*(w.communicate(start) for w in workers)), 30)
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    assert [w.returncode for w in workers] == [0, 0]
    counts = [int(out) for out, _ in outputs]
    # How the 100 split varies from run to run (one process often wins them all): what is asserted is
    # that two processes share one window. Atomicity between Redis connections is shown above, by
    # one limiter's 500 concurrent hits over its pool of connections.
    assert sum(counts) == 100, counts


@pytest.mark.redis
async def test_limits_are_shared_between_limiters_on_one_redis(
    make_limiter: MakeLimiter, fresh_redis_url: str
) -> None:
    limits = Limits(per_key=RateLimit(rpm=3))
    one, two = make_limiter(limits, fresh_redis_url), make_limiter(limits, fresh_redis_url)
    results = [await admitted(limiter, subject_of(limiter, "k")) for limiter in (one, two, one, two)]
    assert results == [True, True, True, False]


async def test_redis_down_admits_and_warns_once_without_the_password(
    make_limiter: MakeLimiter, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://:pa55word-xyz@127.0.0.1:{closed_port()}/0"
    limiter = make_limiter(Limits(per_key=RateLimit(rpm=1, tpm=10)), url)
    key = subject_of(limiter, "k")
    with caplog.at_level(logging.WARNING, logger="mmstudio.domain.ratelimit"):
        for _ in range(3):  # over the limit, but nothing can count
            await limiter.hit(key)
        await limiter.add_tokens(key, 100)
        await limiter.hit(key)
    warnings = [r for r in caplog.records if r.name == "mmstudio.domain.ratelimit"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "127.0.0.1" in warnings[0].getMessage()
    assert "pa55word" not in caplog.text
