"""Reading a whole table in bounded memory: keyset pages, for the checks that walk every row (`verify`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg


async def pages(conn: asyncpg.Connection, select: str, key: str, chunk: int, *args: object
                 ) -> AsyncIterator[list[asyncpg.Record]]:
    """The rows of `select` (its table aliased t; $1 is the page size, `args` from $2) in `key` order,
    `chunk` at a time. Keyset paging: each page starts after the last key seen, so finding the
    thousandth page costs what finding the first does."""
    after: object = None
    while True:
        if after is None:
            rows = await conn.fetch(f"{select} ORDER BY t.{key} LIMIT $1", chunk, *args)
        else:
            rows = await conn.fetch(f"{select} WHERE t.{key} > ${len(args) + 2} ORDER BY t.{key} LIMIT $1",
                                    chunk, *args, after)
        if rows:
            yield rows
        if len(rows) < chunk:
            return
        after = rows[-1][key]
