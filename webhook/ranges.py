"""HTTP Range requests (RFC 9110, section 14): one `bytes=` range, parsed without trusting its numbers."""

from __future__ import annotations

import re

from wa_archive.errors import RangeNotSatisfiable

# Positions longer than this cannot be within any stored object (10**19 bytes is 8 EiB), so they
# are compared as "beyond the end" instead of being converted: no integer of thousands of digits.
MAX_DIGITS = 19
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.ASCII)
USAGE = "use bytes=FIRST-LAST, bytes=FIRST- or bytes=-SUFFIX_LENGTH (one range)"


def _position(digits: str, beyond: int) -> int:
    significant = digits.lstrip("0") or "0"  # leading zeros are allowed and say nothing about size
    return int(significant) if len(significant) <= MAX_DIGITS else beyond


def parse_range(header: str, size: int) -> tuple[int, int]:
    """(first, last) byte positions, inclusive, for a Range header over `size` bytes;
    RangeNotSatisfiable says why when it cannot be served."""
    match = _RANGE.fullmatch(header.strip())
    if match is None or not (match.group(1) or match.group(2)):
        raise RangeNotSatisfiable(f"unsupported Range {header[:100]!r}: {USAGE}")
    if size == 0:
        raise RangeNotSatisfiable("the object is empty: no byte range can be served")
    first_digits, last_digits = match.groups()
    if not first_digits:  # suffix: the last N bytes
        suffix = _position(last_digits, size)
        if suffix == 0:
            raise RangeNotSatisfiable("a suffix range of 0 bytes selects nothing")
        return max(0, size - suffix), size - 1
    first = _position(first_digits, size)
    if first >= size:
        raise RangeNotSatisfiable(f"Range starts at or after the end of the {size}-byte object")
    last = _position(last_digits, size - 1) if last_digits else size - 1
    if last < first:
        raise RangeNotSatisfiable("Range ends before it starts")
    return first, min(last, size - 1)
