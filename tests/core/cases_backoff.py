"""node.backoff: growth, cap, jitter bounds, reset, determinism, and a fleet that does not stampede."""

from node.backoff import Backoff


def seeded(seed):
    """rand(n) from a small xorshift32 (MicroPython's random differs from CPython's)."""
    state = [(seed * 2654435761 + 1) & 0xFFFFFFFF or 1]

    def rand(n):
        x = state[0]
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        state[0] = x
        return x % n

    return rand


def lowest(n):
    return 0


def highest(n):
    return n - 1


def steps(first, cap, count):
    out = []
    step = first
    for _ in range(count):
        out.append(step)
        step = min(step * 2, cap)
    return out


def test_grows_by_doubling_between_half_and_full_step():
    low, high = Backoff(1000, 60000, lowest), Backoff(1000, 60000, highest)
    assert [low.next_ms() for _ in range(5)] == [500, 1000, 2000, 4000, 8000]
    assert [high.next_ms() for _ in range(5)] == [1000, 2000, 4000, 8000, 16000]


def test_stops_growing_at_the_cap():
    low, high = Backoff(1000, 60000, lowest), Backoff(1000, 60000, highest)
    for _ in range(6):
        low.next_ms()
        high.next_ms()
    for _ in range(20):
        assert low.next_ms() == 30000
        assert high.next_ms() == 60000


def test_jitter_stays_within_the_step():
    rand = seeded(7)
    b = Backoff(2000, 120000, rand)
    for step in steps(2000, 120000, 30):
        wait = b.next_ms()
        assert type(wait) is int
        assert step // 2 <= wait <= step, (step, wait)


def test_odd_first_step_keeps_ints_and_bounds():
    b = Backoff(3, 7, highest)
    assert [b.next_ms() for _ in range(4)] == [3, 6, 7, 7]
    b = Backoff(3, 7, lowest)
    assert [b.next_ms() for _ in range(4)] == [1, 3, 3, 3]


def test_reset_starts_again_from_the_first_step():
    b = Backoff(1000, 60000, highest)
    for _ in range(8):
        b.next_ms()
    b.reset()
    assert [b.next_ms() for _ in range(3)] == [1000, 2000, 4000]


def test_same_seed_same_waits():
    a, b = Backoff(1000, 60000, seeded(42)), Backoff(1000, 60000, seeded(42))
    waits = [a.next_ms() for _ in range(12)]
    assert waits == [b.next_ms() for _ in range(12)]
    other = Backoff(1000, 60000, seeded(43))
    assert waits != [other.next_ms() for _ in range(12)]


def test_a_fleet_does_not_come_back_in_one_wave():
    """100 nodes losing the broker together: each step's waits spread over its range."""
    fleet = [Backoff(1000, 60000, seeded(seed)) for seed in range(1, 101)]
    for step in steps(1000, 60000, 5):
        waits = [b.next_ms() for b in fleet]
        width = step - step // 2
        assert min(waits) >= step // 2 and max(waits) <= step
        assert max(waits) - min(waits) >= width // 2, (step, min(waits), max(waits))
        # and not clumped: no tenth of the range holds more than a quarter of the fleet
        counts = [0] * 10
        for w in waits:
            counts[min(9, (w - step // 2) * 10 // width)] += 1
        assert max(counts) <= 25, (step, counts)


def test_bad_arguments_are_refused():
    for first, cap in ((0, 10), (10, 5), (-1, 10), (1.5, 10), (True, 10)):
        try:
            Backoff(first, cap, lowest)
        except ValueError:
            continue
        raise AssertionError("accepted %r, %r" % (first, cap))
