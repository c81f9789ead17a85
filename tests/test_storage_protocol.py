"""Both object stores are true to the ObjectStore protocol: every method it declares exists on each
backend with the same parameters and the same kind (coroutine or async iterator), so callers never
need to ask which backend they hold; where a backend has nothing to do, it says so."""

from __future__ import annotations

import inspect
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from wa_archive.storage import FilesystemStore, ObjectStore, S3Store
from wa_archive.storage.base import ObjectInfo

BACKENDS = [FilesystemStore, S3Store]


def _protocol_methods() -> dict[str, object]:
    return {name: member for name, member in vars(ObjectStore).items()
            if not name.startswith("_") and inspect.isfunction(member)}


def _kind(fn: object) -> str:
    if inspect.isasyncgenfunction(fn):
        return "async iterator"
    if inspect.iscoroutinefunction(fn):
        return "coroutine"
    return "function"


def _parameters(fn: object) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_the_protocol_declares_what_callers_use():
    # Callers outside storage/ use these; a method missing here would send them back to probing.
    assert {"put_stream", "read", "head", "set_legal_hold", "extend_retention", "dispose", "request_restore",
            "presigned_url", "list_keys", "ping", "close"} <= set(_protocol_methods())
    assert "url" in ObjectStore.__annotations__


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.__name__)
def test_every_protocol_method_is_implemented_with_the_same_parameters(backend):
    for name, declared in _protocol_methods().items():
        implemented = getattr(backend, name, None)
        assert implemented is not None, f"{backend.__name__} lacks {name}"
        # `read` is declared as a plain method returning an async iterator; backends write it as an
        # async generator. Every other method is a coroutine on both sides.
        expected = "async iterator" if name == "read" else _kind(declared)
        assert _kind(implemented) == expected, f"{backend.__name__}.{name} is a {_kind(implemented)}"
        assert _parameters(implemented) == _parameters(declared), f"{backend.__name__}.{name} parameters differ"


def test_both_backends_are_object_stores(tmp_path):
    filesystem = FilesystemStore(tmp_path / "objects")
    s3 = S3Store("bucket", "prefix", endpoint_url="http://127.0.0.1:1", region="us-east-1", part_size=5 * 1024 * 1024)
    assert isinstance(filesystem, ObjectStore) and isinstance(s3, ObjectStore)
    assert filesystem.url.startswith("file://") and s3.url == "s3://bucket/prefix"
    assert not isinstance(object(), ObjectStore)


async def test_the_filesystem_answers_what_it_has_no_use_for(tmp_path):
    store = FilesystemStore(tmp_path / "objects")
    assert await store.request_restore("any/key") is None  # nothing is ever in an archive tier
    assert await store.presigned_url("any/key", content_type="image/png", filename="a.png") is None


async def test_s3_hands_out_a_short_lived_download_url(s3_endpoint, s3_bucket):
    store = S3Store(s3_bucket, f"proto-{uuid.uuid4().hex[:8]}", endpoint_url=s3_endpoint, region="us-east-1",
                    part_size=5 * 1024 * 1024)
    try:
        url = await store.presigned_url("a/b.png", 3600, content_type="text/html", filename="b.png")
    finally:
        await store.close()
    assert url is not None and urlsplit(url).path.endswith("/a/b.png")
    query = parse_qs(urlsplit(url).query)
    assert int(query["Expires"][0]) <= time.time() + 300 + 5  # capped at five minutes whatever is asked
    assert query["response-content-disposition"][0].startswith("attachment")


def test_an_archive_tier_object_needs_a_restore_until_restored():
    def info(**kw) -> ObjectInfo:
        return ObjectInfo(key="k", size=1, sha256=None, metadata={}, **kw)

    assert info(storage_class="GLACIER").needs_restore
    assert info(storage_class="DEEP_ARCHIVE").needs_restore
    assert not info(storage_class="GLACIER", restored=True).needs_restore
    assert not info(storage_class="STANDARD").needs_restore and not info().needs_restore
