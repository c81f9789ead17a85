"""Never a 500 from bad input to the auditors' pages: generated queries, paths, cookies and sign-in forms.

Every answer must be below 500, no body may carry a traceback, and a redirect stays under /ui/.
"""

from __future__ import annotations

from hypothesis import strategies as st
from yarl import URL

from tests.fuzz_http import fuzz_stack, path_segment, raw_request, request, seed
from tests.strategies import (
    EXAMPLES,
    PHONE,
    explore,
    header_text,
    nasty_strings,
    query_keys,
    query_values,
    raw_header,
    raw_queries,
)
from tests.test_ui_security import sign_in


async def test_pages_never_crash(stack_factory):
    stack = await fuzz_stack(stack_factory)
    seeded = await seed(stack)
    token = await stack.token("auditor")
    session = (await sign_in(stack, token)).value
    cookies = st.sampled_from([None, session]) | header_text.map(lambda t: t.replace(";", "").replace(",", ""))

    def cookie_header(value: str | None) -> dict[str, str]:
        return {} if value is None else {"Cookie": f"wa_archive_session={value}"}

    async def pages(query: dict[str, str], raw: str, text: str, cookie: str | None) -> None:
        headers = cookie_header(cookie)
        segment = path_segment(text)
        for url in (URL(f"{stack.url}/ui/").with_query(query), URL(f"{stack.url}/ui/?{raw}", encoded=True),
                    URL(f"{stack.url}/ui/messages/{segment}", encoded=True),
                    URL(f"{stack.url}/ui/messages/{path_segment(seeded['message_id'])}", encoded=True),
                    URL(f"{stack.url}/ui/conversations/{segment}", encoded=True).with_query(query),
                    URL(f"{stack.url}/ui/conversations/{PHONE}?{raw}", encoded=True),
                    URL(f"{stack.url}/ui/media/{segment}", encoded=True),
                    URL(f"{stack.url}/ui/reconciliation/{segment}", encoded=True).with_query(query),
                    URL(f"{stack.url}/ui/reconciliation?{raw}", encoded=True),
                    URL(f"{stack.url}/ui/contacts/{segment}", encoded=True).with_query(query),
                    URL(f"{stack.url}/ui/contacts/{PHONE}?{raw}", encoded=True)):
            status, got, _ = await request(stack, "GET", url, headers=headers, json_errors=False, where=str(url))
            if 300 <= status < 400:
                assert got["Location"].startswith("/ui/")

    await explore(pages, st.dictionaries(query_keys, query_values, max_size=4), raw_queries,
                  st.text(max_size=30) | nasty_strings, cookies)

    async def raw_cookie(cookie: bytes, raw: str) -> None:
        for target in (f"/ui/?{raw}", f"/ui/messages/{path_segment(seeded['message_id'])}", "/ui/login"):
            await raw_request(stack, "GET", target, {"Cookie": b"wa_archive_session=" + cookie}, json_errors=False,
                              where=f"cookie {cookie!r}")

    await explore(raw_cookie, raw_header, raw_queries, examples=EXAMPLES // 2)

    async def login(form: dict[str, str], raw: bytes, cookie: str | None) -> None:
        headers = cookie_header(cookie)
        status, got, _ = await request(stack, "POST", f"{stack.url}/ui/login", data=form, headers=headers,
                                       json_errors=False, where=f"login {form!r}")
        if 300 <= status < 400:
            assert got["Location"].startswith("/ui/")
        await request(stack, "POST", f"{stack.url}/ui/login", data=raw,
                      headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
                      json_errors=False, where=f"login raw {raw[:100]!r}")

    form_keys = st.sampled_from(["token", "next", "csrf"]) | header_text
    form_values = header_text | nasty_strings.filter(lambda s: "\ud800" not in s) | st.sampled_from([token, "/ui/\r\nSet-Cookie: x=1", "//evil.example",
                                                                 "/ui/%0d%0aX: y", "/ui/" + "a" * 5000])
    await explore(login, st.dictionaries(form_keys, form_values, max_size=3),
                  st.binary(max_size=200) | raw_queries.map(str.encode), cookies)
