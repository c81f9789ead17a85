"""HTTP Range parsing (RFC 9110, one range of bytes): what is served, and the reason for what is refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import digits


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 10_000), st.one_of(st.none(), st.integers(0, 20_000), digits),
       st.one_of(st.none(), st.integers(0, 20_000), digits), st.booleans())
def test_range_parsing_agrees_with_rfc_9110(size, first, last, suffix):
    from wa_archive.errors import RangeNotSatisfiable
    from webhook.ranges import parse_range

    if suffix:
        header = f"bytes=-{last if last is not None else ''}"
    else:
        header = f"bytes={first if first is not None else ''}-{last if last is not None else ''}"
    as_int = lambda v: None if v is None else int(v) if isinstance(v, int) or len(v) < 25 else 10 ** 30  # noqa: E731
    f, l_ = as_int(first), as_int(last)
    if suffix:
        expected = None if l_ is None or l_ == 0 or size == 0 else (max(0, size - l_), size - 1)
    elif f is None:
        expected = None if l_ is None or l_ == 0 or size == 0 else (max(0, size - l_), size - 1)
    elif f >= size or (l_ is not None and l_ < f):
        expected = None
    else:
        expected = (f, size - 1 if l_ is None else min(l_, size - 1))
    if expected is None:
        with pytest.raises(RangeNotSatisfiable) as refused:
            parse_range(header, size)
        assert str(refused.value)
    else:
        assert parse_range(header, size) == expected


@pytest.mark.parametrize("header", ["lines=1-2", "bytes=0-1,3-4", "bytes=١-٢", "bytes=-", "bytes=0x10-", "bytes=5",
                                    "bytes=a-b", "", "bytes=" + "1" * 10_000 + "-" + "2" * 10_000 + "x"])
def test_unsupported_ranges_are_refused_with_a_reason(header):
    from wa_archive.errors import RangeNotSatisfiable
    from webhook.ranges import parse_range

    with pytest.raises(RangeNotSatisfiable) as refused:
        parse_range(header, 100)
    assert "bytes=" in str(refused.value)


def test_leading_zeros_do_not_make_a_position_huge():
    from webhook.ranges import parse_range

    assert parse_range("bytes=" + "0" * 5000 + "5-", 100) == (5, 99)
    assert parse_range("bytes=-" + "0" * 5000 + "7", 100) == (93, 99)
    assert parse_range("bytes=0-" + "0" * 5000 + "9", 100) == (0, 9)
