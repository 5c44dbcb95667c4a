"""Cases for node.ratelimit (the command rate limit); MicroPython subset (CPython and the VM)."""
from node.ratelimit import TokenBucket


def _taken(bucket, now, tries):
    n = 0
    for _ in range(tries):
        if bucket.take(now):
            n += 1
    return n


def test_a_burst_then_one_per_period():
    b = TokenBucket(8, 1000, 0)
    assert b.tokens(0) == 8
    assert _taken(b, 0, 20) == 8
    assert not b.take(999)
    assert b.take(1000) and not b.take(1000)
    assert _taken(b, 3500, 10) == 2  # 2.5 s: two whole tokens, half of the next kept
    assert b.take(4000)


def test_credit_never_exceeds_the_burst():
    b = TokenBucket(8, 1000, 0)
    assert _taken(b, 3600000, 100) == 8  # an hour idle still gives only 8
    assert b.tokens(3600000) == 0


def test_a_sustained_flood_gets_the_refill_rate():
    b = TokenBucket(8, 1000, 0)
    ran = 0
    for ms in range(0, 60000, 10):  # 100 a second for a minute
        if b.take(ms):
            ran += 1
    assert ran == 8 + 59, ran


def test_time_going_back_refills_nothing():
    b = TokenBucket(2, 1000, 5000)
    assert _taken(b, 5000, 5) == 2
    assert not b.take(1000)
    assert not b.take(5999)
    assert b.take(6000)


def test_large_uptimes():
    start = 2 ** 31 + 123  # past ticks_ms's wrap; the node's uptime keeps counting
    b = TokenBucket(8, 1000, start)
    assert _taken(b, start, 9) == 8
    assert b.take(start + 1000)
    assert b.tokens(start + 10 ** 9) == 8
