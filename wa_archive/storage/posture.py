"""Storage posture: configure an S3 bucket for WORM retention (`storage init`) and check it
(`storage check`, and at worker/serve start), including a canary that proves the lock holds.

Each finding says what a setting is and what it should be. The filesystem backend has no bucket
settings; its findings say plainly what it enforces itself and what it cannot promise.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import asyncpg
from botocore.exceptions import ClientError

from wa_archive.config import Settings
from wa_archive.errors import ConfigError, RetentionActive, StorageConflict
from wa_archive.storage.base import ObjectStore
from wa_archive.storage.filesystem import FilesystemStore
from wa_archive.storage.s3 import S3Store, _code

TRANSITION_RULE = "wa-archive-transition"
ABORT_RULE = "wa-archive-abort-incomplete-multipart"
CANARY_PREFIX = "_canary/"
NO_TRANSITION = "none"  # WA_ARCHIVE_S3_LIFECYCLE_STORAGE_CLASS for a store without storage tiers
# What an S3-compatible store answers for an API it does not have (MinIO: PutPublicAccessBlock).
NOT_IMPLEMENTED = "NotImplemented"


@dataclass
class Finding:
    setting: str
    actual: str
    expected: str
    ok: bool
    note: str = ""  # for settings the backend cannot provide: what is promised instead

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _transition_class(settings: Settings) -> str | None:
    """The storage class objects move to, or None: `none` is a store without tiers (MinIO without a
    remote tier refuses any transition), where no transition rule is written and none is expected."""
    wanted = settings.s3_lifecycle_storage_class
    return None if wanted.strip().lower() == NO_TRANSITION else wanted


def _lifecycle_rules(store: S3Store, settings: Settings) -> list[dict[str, Any]]:
    prefix = f"{store.prefix}/" if store.prefix else ""
    abort = {"ID": ABORT_RULE, "Status": "Enabled", "Filter": {"Prefix": prefix},
             "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}
    storage_class = _transition_class(settings)
    if storage_class is None:
        return [abort]
    return [
        {"ID": TRANSITION_RULE, "Status": "Enabled", "Filter": {"Prefix": prefix},
         "Transitions": [{"Days": settings.s3_lifecycle_transition_days, "StorageClass": storage_class}]},
        abort,
    ]


def _encryption(settings: Settings) -> dict[str, Any]:
    default: dict[str, Any] = {"SSEAlgorithm": settings.s3_sse}
    if settings.s3_sse == "aws:kms" and settings.s3_kms_key_id:
        default["KMSMasterKeyID"] = settings.s3_kms_key_id
    return {"Rules": [{"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": True}]}


async def _get(call: Callable[..., Awaitable[dict[str, Any]]], *args: Any, missing: tuple[str, ...],
               **kwargs: Any) -> dict[str, Any] | None:
    try:
        return await call(*args, **kwargs)
    except ClientError as exc:
        if _code(exc) in missing:
            return None
        raise


async def init_s3(store: S3Store, settings: Settings) -> list[str]:
    """Bring the bucket to the posture `check_s3` expects; idempotent. Returns what was done."""
    s3 = await store._s3()
    done = []
    if await _get(s3.head_bucket, Bucket=store.bucket, missing=("404", "NoSuchBucket", "NotFound")) is None:
        extra = {} if settings.s3_region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": settings.s3_region}}
        await s3.create_bucket(Bucket=store.bucket, ObjectLockEnabledForBucket=True, **extra)
        done.append(f"created bucket {store.bucket} with Object Lock")
    await s3.put_bucket_versioning(Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"})
    done.append("versioning: Enabled")
    wanted = {"ObjectLockEnabled": "Enabled",
              "Rule": {"DefaultRetention": {"Mode": settings.s3_object_lock_mode, "Days": settings.retention_days}}}
    lock = await _get(s3.get_object_lock_configuration, Bucket=store.bucket,
                      missing=("ObjectLockConfigurationNotFoundError",))
    current = (lock or {}).get("ObjectLockConfiguration", {})
    retention = current.get("Rule", {}).get("DefaultRetention", {})
    if (current.get("ObjectLockEnabled"), retention.get("Mode"), retention.get("Days")) != (
            "Enabled", settings.s3_object_lock_mode, settings.retention_days):
        await s3.put_object_lock_configuration(Bucket=store.bucket, ObjectLockConfiguration=wanted)
    done.append(f"Object Lock default retention: {settings.s3_object_lock_mode}, {settings.retention_days} days")
    await s3.put_bucket_encryption(Bucket=store.bucket, ServerSideEncryptionConfiguration=_encryption(settings))
    done.append(f"default encryption: {settings.s3_sse}")
    try:
        await s3.put_public_access_block(Bucket=store.bucket, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True})
        done.append("public access: blocked")
    except ClientError as exc:
        if _code(exc) != NOT_IMPLEMENTED:
            raise
        # MinIO: no such setting, its buckets are private unless a bucket policy says otherwise.
        done.append("public access block: not supported by this store (NotImplemented); `storage check` reads"
                    " the bucket policy instead")
    current = await _get(s3.get_bucket_lifecycle_configuration, Bucket=store.bucket,
                         missing=("NoSuchLifecycleConfiguration",))
    # Our own rules are rewritten whole: a transition rule left from an earlier setting goes with `none`.
    others = [r for r in (current or {}).get("Rules", []) if r.get("ID") not in (TRANSITION_RULE, ABORT_RULE)]
    storage_class = _transition_class(settings)
    try:
        await s3.put_bucket_lifecycle_configuration(Bucket=store.bucket, LifecycleConfiguration={
            "Rules": others + _lifecycle_rules(store, settings)})
    except ClientError as exc:
        raise ConfigError(_lifecycle_refused(exc, storage_class)) from exc
    transition = (f"{storage_class} after {settings.s3_lifecycle_transition_days} days" if storage_class
                  else f"no transition (WA_ARCHIVE_S3_LIFECYCLE_STORAGE_CLASS={NO_TRANSITION})")
    done.append(f"lifecycle: {transition}, incomplete multipart uploads aborted after 1 day"
                + (f" ({len(others)} other rules kept)" if others else ""))
    store._object_lock = None  # re-read on next write
    return done


def _lifecycle_refused(exc: ClientError, storage_class: str | None) -> str:
    error = exc.response.get("Error", {})
    refused = f"the store refused the lifecycle rules ({error.get('Code')}: {error.get('Message')})"
    if storage_class is None:
        return (f"{refused}; WA_ARCHIVE_S3_LIFECYCLE_STORAGE_CLASS is already {NO_TRANSITION}, so only the rule"
                " that aborts incomplete multipart uploads was sent")
    return (f"{refused}: it may have no storage class {storage_class!r}. Set WA_ARCHIVE_S3_LIFECYCLE_STORAGE_CLASS"
            f" to a class or tier this store has, or to {NO_TRANSITION} for a store without tiers (MinIO without"
            " a remote tier)")


async def check_s3(store: S3Store, settings: Settings, *, canary: bool = True) -> list[Finding]:
    s3 = await store._s3()
    findings: list[Finding] = []
    versioning = (await s3.get_bucket_versioning(Bucket=store.bucket)).get("Status") or "never enabled"
    findings.append(Finding("versioning", versioning, "Enabled", versioning == "Enabled"))

    lock = await _get(s3.get_object_lock_configuration, Bucket=store.bucket,
                      missing=("ObjectLockConfigurationNotFoundError",))
    conf = (lock or {}).get("ObjectLockConfiguration", {})
    retention = conf.get("Rule", {}).get("DefaultRetention", {})
    days = retention.get("Days") or 365 * (retention.get("Years") or 0) or None
    want_lock = f"Enabled, {settings.s3_object_lock_mode}, {settings.retention_days} days"
    have_lock = (f"{conf.get('ObjectLockEnabled', 'not enabled')}, {retention.get('Mode', 'no default mode')}, "
                 f"{days or 'no default'} days")
    findings.append(Finding("object lock default retention", have_lock, want_lock, have_lock == want_lock))

    enc = await _get(s3.get_bucket_encryption, Bucket=store.bucket,
                     missing=("ServerSideEncryptionConfigurationNotFoundError",))
    rule = ((enc or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules") or [{}])[0]
    applied = rule.get("ApplyServerSideEncryptionByDefault", {})
    have_enc = applied.get("SSEAlgorithm", "none")
    if applied.get("KMSMasterKeyID"):
        have_enc += f" ({applied['KMSMasterKeyID']})"
    kms = settings.s3_sse == "aws:kms" and settings.s3_kms_key_id
    want_enc = settings.s3_sse + (f" ({settings.s3_kms_key_id})" if kms else "")
    findings.append(Finding("default encryption", have_enc, want_enc, have_enc == want_enc))

    try:
        pab = await _get(s3.get_public_access_block, Bucket=store.bucket,
                         missing=("NoSuchPublicAccessBlockConfiguration",))
    except ClientError as exc:
        if _code(exc) != NOT_IMPLEMENTED:
            raise
        findings.append(await _bucket_policy_instead(store))
    else:
        flags = (pab or {}).get("PublicAccessBlockConfiguration", {})
        names = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
        open_flags = [n for n in names if not flags.get(n)]
        findings.append(Finding("public access block",
                                "all blocked" if not open_flags else "off: " + ", ".join(open_flags),
                                "all blocked", not open_flags))

    findings += _check_lifecycle(await _get(s3.get_bucket_lifecycle_configuration, Bucket=store.bucket,
                                            missing=("NoSuchLifecycleConfiguration",)), store, settings)
    if canary:
        findings.append(await _s3_canary(store, settings))
    return findings


async def _bucket_policy_instead(store: S3Store) -> Finding:
    """For a store without a public access block (MinIO): a bucket is private unless its policy grants
    access, so no policy is the same promise, and any policy is for a person to review."""
    s3 = await store._s3()
    try:
        policy = await _get(s3.get_bucket_policy, Bucket=store.bucket, missing=("NoSuchBucketPolicy",))
    except ClientError as exc:
        return Finding("public access block",
                       f"not supported by this store; its bucket policy could not be read ({_code(exc)})",
                       "all blocked", False, "allow the archive's key s3:GetBucketPolicy on the bucket")
    if policy is None or not policy.get("Policy"):
        return Finding("public access block", "not supported by this store; no bucket policy (private)",
                       "all blocked", True,
                       "the store has no public access block; without a bucket policy nothing grants public access")
    return Finding("public access block",
                   "a bucket policy is set and this store cannot block public access: review it",
                   "all blocked", False,
                   "the store has no public access block; only the bucket policy decides who can read the archive")


def _check_lifecycle(conf: dict[str, Any] | None, store: S3Store, settings: Settings) -> list[Finding]:
    rules = {r.get("ID"): r for r in (conf or {}).get("Rules", [])}
    t = rules.get(TRANSITION_RULE, {})
    have_t = ", ".join(f"{x.get('StorageClass')} after {x.get('Days')} days"
                       for x in t.get("Transitions", [])) or "none"
    storage_class = _transition_class(settings)
    a = rules.get(ABORT_RULE, {}).get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation")
    if storage_class is None:
        enabled = t.get("Status") == "Enabled" and have_t != "none"
        transition = Finding("lifecycle transition", have_t if enabled else "none", "none", not enabled,
                             f"WA_ARCHIVE_S3_LIFECYCLE_STORAGE_CLASS={NO_TRANSITION}: a store without tiers,"
                             " objects stay where they are written")
    else:
        want_t_s = f"{storage_class} after {settings.s3_lifecycle_transition_days} days"
        shown = have_t if not t or t.get("Status") == "Enabled" else f"{have_t} (disabled)"
        transition = Finding("lifecycle transition", shown, want_t_s,
                             t.get("Status") == "Enabled" and have_t == want_t_s)
    findings = [
        transition,
        Finding("lifecycle: abort incomplete multipart uploads", f"after {a} days" if a else "none",
                "after 1 days", a == 1),
    ]
    early = [r.get("ID") or "(no id)" for r in rules.values() if r.get("Status") == "Enabled" and "Expiration" in r
             and (r["Expiration"].get("Date") or (r["Expiration"].get("Days") or 10 ** 9) < settings.retention_days)]
    findings.append(Finding("lifecycle: expiry of current versions",
                            "expires early: " + ", ".join(early) if early else "none before retention",
                            f"none before {settings.retention_days} days", not early))
    return findings


async def _s3_canary(store: S3Store, settings: Settings) -> Finding:
    """Write a small locked object, then try to delete and to overwrite that version."""
    s3 = await store._s3()
    key = store._full(f"{CANARY_PREFIX}lock-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}")
    body = os.urandom(32)
    until = datetime.now(timezone.utc) + timedelta(days=1)  # the shortest useful lock: it stays a day

    def args(data: bytes) -> dict[str, Any]:
        return {"Bucket": store.bucket, "Key": key, "Body": data, "ChecksumAlgorithm": "SHA256",
                "ChecksumSHA256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
                "ObjectLockMode": settings.s3_object_lock_mode, "ObjectLockRetainUntilDate": until}
    try:
        version = (await s3.put_object(**args(body))).get("VersionId")
    except ClientError as exc:
        return Finding("lock canary", f"could not write a locked object ({_code(exc)})",
                       "delete and overwrite refused", False)
    if not version:
        return Finding("lock canary", "the store returned no version id", "delete and overwrite refused", False)
    outcome = []
    try:
        await s3.delete_object(Bucket=store.bucket, Key=key, VersionId=version)
        outcome.append("delete of the locked version ACCEPTED")
    except ClientError as exc:
        outcome.append(f"delete refused ({_code(exc)})")
    with contextlib.suppress(ClientError):
        await s3.put_object(**args(os.urandom(32)))  # a new version on top; the locked one must survive
    try:
        resp = await s3.get_object(Bucket=store.bucket, Key=key, VersionId=version)
        async with resp["Body"] as stream:
            intact = await stream.read() == body
        outcome.append("overwrite kept the locked version intact" if intact else "overwrite CHANGED the locked version")
    except ClientError as exc:
        intact = False
        outcome.append(f"the locked version is GONE ({_code(exc)})")
    ok = outcome[0].startswith("delete refused") and intact
    return Finding("lock canary", "; ".join(outcome) + f" [{key}]", "delete and overwrite refused", ok)


async def check_filesystem(store: FilesystemStore, settings: Settings, *, canary: bool = True) -> list[Finding]:
    own = "enforced by this application only; anyone with write access to the directory can still delete"
    findings = [
        Finding("versioning", "not available", "not available on a filesystem", True,
                "objects are never overwritten instead"),
        Finding("object lock", "not available", "not available on a filesystem", True,
                f"retain-until kept in each object's .meta.json, {own}"),
        Finding("legal hold", "marker files (.legal-hold)", "marker files", True, own),
        Finding("encryption at rest", "not provided by the archive", "the volume's own (e.g. LUKS)", True,
                "use an encrypted volume"),
        Finding("writable store root", "yes" if os.access(store.root, os.W_OK) else "no", "yes",
                os.access(store.root, os.W_OK)),
    ]
    if canary:
        findings.append(await _filesystem_canary(store))
    return findings


async def _filesystem_canary(store: FilesystemStore) -> Finding:
    key = f"{CANARY_PREFIX}lock-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        yield data
    until = datetime.now(timezone.utc) + timedelta(days=1)
    await store.put_stream(key, chunks(os.urandom(32)), content_type="application/octet-stream", metadata={},
                           expected_sha256=None, retain_until=until)
    outcome, ok = [], True
    try:
        await store.dispose(key)
        outcome.append("removal ACCEPTED")
        ok = False
    except RetentionActive:
        outcome.append("removal refused by the application")
    try:
        await store.put_stream(key, chunks(os.urandom(32)), content_type="application/octet-stream", metadata={},
                               expected_sha256=None, retain_until=until)
        outcome.append("overwrite ACCEPTED")
        ok = False
    except StorageConflict:
        outcome.append("overwrite refused")
    mode = (store.root / key).stat().st_mode & 0o777
    outcome.append(f"file mode {mode:o}")
    ok = ok and not mode & 0o222
    return Finding("lock canary", "; ".join(outcome) + f" [{key}]", "removal and overwrite refused, file read-only", ok,
                   "the file system itself does not refuse: root or the owner can still delete it")


async def sweep_canaries(store: ObjectStore) -> int:
    """Remove canaries whose one-day lock has lapsed (disposition runs this); returns how many."""
    removed = 0
    for key in await store.list_keys(CANARY_PREFIX):
        with contextlib.suppress(RetentionActive):
            removed += bool(await store.dispose(key))
    return removed


async def check_store(store: ObjectStore, settings: Settings, *, canary: bool = True) -> list[Finding]:
    if isinstance(store, S3Store):
        return await check_s3(store, settings, canary=canary)
    # open_store builds only these two backends: a store that is not S3 is the filesystem.
    return await check_filesystem(cast(FilesystemStore, store), settings, canary=canary)


async def record_check(pool: asyncpg.Pool, store_url: str, findings: list[Finding], checked_by: str) -> int:
    check_id: int = await pool.fetchval(
        "INSERT INTO storage_checks (store_url, ok, findings, checked_by) VALUES ($1,$2,$3,$4) RETURNING id",
        store_url, all(f.ok for f in findings), [f.as_dict() for f in findings], checked_by)
    return check_id


async def startup_check(store: ObjectStore, settings: Settings, pool: asyncpg.Pool,
                        checked_by: str) -> list[Finding]:
    """The check `worker` and `serve` run before starting: every finding is logged and recorded;
    a bucket without versioning stops them unless WA_ARCHIVE_ALLOW_UNVERSIONED_BUCKET is set."""
    import structlog

    log = structlog.get_logger("wa_archive.storage")
    findings = await check_store(store, settings)
    await record_check(pool, store.url, findings, checked_by)
    for f in findings:
        if not f.ok:
            log.error("storage_posture_wrong", setting=f.setting, actual=f.actual, expected=f.expected,
                      storage=store.url)
    versioning = next((f for f in findings if f.setting == "versioning"), None)
    if isinstance(store, S3Store) and versioning is not None and not versioning.ok:
        if not settings.allow_unversioned_bucket:
            raise ConfigError(
                f"bucket {store.bucket} has versioning {versioning.actual!r}: objects could be lost to an "
                "overwrite or delete. Run `wa-archive storage init`, or set "
                "WA_ARCHIVE_ALLOW_UNVERSIONED_BUCKET=true to run anyway")
        log.critical("UNVERSIONED_BUCKET_OVERRIDE", bucket=store.bucket,
                     warning="running on a bucket WITHOUT versioning because "
                             "WA_ARCHIVE_ALLOW_UNVERSIONED_BUCKET is set;"
                             " archived objects are not protected against overwrite or deletion")
    return findings


async def open_checked_store(settings: Settings, pool: asyncpg.Pool, checked_by: str, *,
                             must_reach: bool) -> ObjectStore:
    """The configured store, after the start-up check (closed again if the check refuses it).

    A store that cannot be reached stops a worker (it has nothing to do without it) but not the
    webhook server, which keeps capturing deliveries into Postgres and reports the store on /readyz.
    """
    import structlog

    from wa_archive.storage import open_store

    store = open_store(settings)
    try:
        await store.ping()
        await startup_check(store, settings, pool, checked_by)
    except ConfigError:
        await store.close()
        raise
    except Exception as exc:
        if must_reach:
            await store.close()
            raise
        structlog.get_logger("wa_archive.storage").error("storage_check_not_possible", storage=store.url,
                                                          error=str(exc))
    return store
