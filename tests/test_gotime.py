"""berth.gotime: Go's time.ParseDuration and docker's GetTimestamp, the until= of the prune
filters. The error messages are dockerd 20.10's, read from its answers to image prune and
builder prune with these values."""

import pytest

from berth.gotime import format_duration, get_timestamp, parse_duration

NOW = 1700000000.0
H = 3600


@pytest.mark.parametrize("value, seconds_before_now", [
    ("1h", H), ("1h30m", 1.5 * H), ("-1h", -H), ("1.5h", 1.5 * H), (".5s", 0.5), ("10µs", 1e-5), ("+0", 0),
])
def test_durations_count_back_from_now(value, seconds_before_now):
    assert get_timestamp(value, NOW) == pytest.approx(NOW - seconds_before_now)


@pytest.mark.parametrize("value, epoch", [
    ("0", 0), ("1", 1), ("+5", 5), ("1600000000.5", 1600000000.5),
    ("2021-01-01Z", 1609459200), ("2021-01-01+01:00", 1609459200 - H),
    ("2021-01-01T10:00:00Z", 1609495200), ("2021-01-01T10:00:00.5+02:00", 1609488000.5),
    ("2021-01-01T10:00:00,5Z", 1609495200.5), ("2021-01-01T10Z", 1609495200),
])
def test_times_and_unix_seconds(value, epoch):
    assert get_timestamp(value, NOW) == pytest.approx(epoch)


def test_a_time_without_a_zone_is_the_daemons_local_time():
    import time
    off = time.localtime(NOW).tm_gmtoff
    assert get_timestamp("2021-01-01", NOW) == 1609459200 - off
    assert get_timestamp("2021-01-01T10:00", NOW) == 1609495200 - off


@pytest.mark.parametrize("value, message", [
    ("bogus", 'failed to parse value as time or duration: "bogus"'),
    ("1e3s", 'failed to parse value as time or duration: "1e3s"'),
    ("5.", 'failed to parse value as time or duration: "5."'),
    ("9999999999999999999999", 'failed to parse value as time or duration: "9999999999999999999999"'),
    ("2021-13-01", 'parsing time "2021-13-01": month out of range'),
    ("2021-02-30", 'parsing time "2021-02-30": day out of range'),
    ("2021-01-01T25:00", 'parsing time "2021-01-01T25:00": hour out of range'),
    ("2021-01-01T10:61", 'parsing time "2021-01-01T10:61": minute out of range'),
    ("2021-01-01x", 'parsing time "2021-01-01x": extra text: "x"'),
    ("-5", 'parsing time "-5" as "2006-01-02": cannot parse "-5" as "2006"'),
    ("3h-1m", 'parsing time "3h-1m" as "2006-01-02": cannot parse "m" as "2006"'),
    ("2021-1-01", 'parsing time "2021-1-01" as "2006-01-02": cannot parse "1-01" as "01"'),
    ("2021-01-01T10:00:00+0100",
     'parsing time "2021-01-01T10:00:00+0100" as "2006-01-02T15:04Z07:00": cannot parse ":00+0100" as "Z07:00"'),
    ("2021-01-01T10:00:00.123456789123Z", 'parsing time "2021-01-01T10:00:00.123456789123Z" as '
                                          '"2006-01-02T15:04:05.999999999Z07:00": cannot parse "123Z" as "Z07:00"'),
])
def test_bad_timestamps_say_what_dockerd_says(value, message):
    with pytest.raises(ValueError) as e:
        get_timestamp(value, NOW)
    assert str(e.value) == message


@pytest.mark.parametrize("value, ns", [
    ("0", 0), ("-0", 0), ("1.s", 10**9), ("1h2m3.5s", (3723 * 10**9 + 5 * 10**8)), ("1µs", 1000), ("-1m", -60 * 10**9),
])
def test_go_durations(value, ns):
    assert parse_duration(value) == ns


@pytest.mark.parametrize("value, message", [
    ("bogus", 'time: invalid duration "bogus"'), ("", 'time: invalid duration ""'), ("-", 'time: invalid duration "-"'),
    (".s", 'time: invalid duration ".s"'), ("1", 'time: missing unit in duration "1"'),
    ("1h2", 'time: missing unit in duration "1h2"'), ("1.5.h", 'time: missing unit in duration "1.5.h"'),
    ("1x", 'time: unknown unit "x" in duration "1x"'), ("3h-1m", 'time: unknown unit "h-" in duration "3h-1m"'),
    ("2021-01-01", 'time: unknown unit "-" in duration "2021-01-01"'),
    ("99999999999999999999h", 'time: invalid duration "99999999999999999999h"'),
])
def test_bad_durations_say_what_go_says(value, message):
    with pytest.raises(ValueError) as e:
        parse_duration(value)
    assert str(e.value) == message


def test_healthcheck_durations_are_gos():
    """HEALTHCHECK's flags (the builder) and run's --health-* (the CLI) parse as Go's
    time.ParseDuration, in its words: `.5s` is half a second, a bare number has no unit."""
    from berth.cli.runflags import duration
    from berth.errors import BerthError, InvalidArgument
    from berth.dockerfile.health import parse_duration
    assert parse_duration(".5s", "interval") == duration("health-interval", ".5s") == 500_000_000
    assert parse_duration("1m30s", "interval") == 90 * 10**9 and parse_duration("", "interval") == 0
    with pytest.raises(InvalidArgument, match=r'^time: missing unit in duration "5" in --interval$'):
        parse_duration("5", "interval")
    with pytest.raises(BerthError, match=r'"--health-timeout" flag: time: unknown unit "x" in duration "3x"$'):
        duration("health-timeout", "3x")


@pytest.mark.parametrize("ns, text", [
    # what Go's time.Duration.String prints for these (fmt.Println(time.Duration(n)))
    (0, "0s"), (1, "1ns"), (1500, "1.5µs"), (10**6, "1ms"), (1500000, "1.5ms"), (300 * 10**6, "300ms"),
    (10**9, "1s"), (1500 * 10**6, "1.5s"), (90 * 10**9, "1m30s"), (3600 * 10**9, "1h0m0s"),
    (3601500 * 10**6, "1h0m1.5s"), (-2 * 10**9, "-2s"), (100 * 3600 * 10**9, "100h0m0s"),
])
def test_format_duration_is_gos(ns, text):
    assert format_duration(ns) == text
    if ns >= 0:
        assert parse_duration(text) == ns  # and reads back
