"""The workflows' retry policies: their values, and that each error they refuse to retry exists by that name."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from wa_archive import errors
from wa_archive.models import ArchiveOptions
from workflows import retries

ARCHIVE_ERRORS = ["MediaAccessDenied", "StorageConflict", "LinkRefused", "TemplateNotFound", "RetentionActive",
                  "GraphRequestRefused"]


def test_every_non_retryable_name_is_an_error_class_of_the_one_tree():
    # Temporal compares names: a misspelt one would quietly make its error retryable.
    assert retries.NON_RETRYABLE == errors.NON_RETRYABLE
    for name in retries.NON_RETRYABLE:
        cls = getattr(errors, name)
        assert isinstance(cls, type) and issubclass(cls, errors.ArchiveError) and cls.__name__ == name
    assert {*ARCHIVE_ERRORS, "ExportError"} <= set(retries.NON_RETRYABLE)


def test_media_policy_follows_the_options_and_refuses_what_no_retry_fixes():
    opts = ArchiveOptions(retry_max_attempts=5, retry_initial_interval=10, retry_backoff=2, retry_max_interval=600)
    policy = retries.media_retry(opts)
    assert sorted(policy.non_retryable_error_types or []) == sorted(ARCHIVE_ERRORS)
    assert policy == RetryPolicy(
        initial_interval=timedelta(seconds=10), backoff_coefficient=2, maximum_interval=timedelta(seconds=600),
        maximum_attempts=5, non_retryable_error_types=policy.non_retryable_error_types)
    # A maximum below the first interval is raised to it, as the server would refuse the policy otherwise.
    short = retries.media_retry(ArchiveOptions(retry_initial_interval=30, retry_max_interval=5))
    assert short.maximum_interval == timedelta(seconds=30)


def test_named_policies_keep_their_values():
    assert retries.DB_RETRY == RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
    assert retries.DB_RETRY.maximum_attempts == 0  # Postgres writes retry until Postgres is back
    assert retries.FAN_OUT_RETRY == RetryPolicy(initial_interval=timedelta(seconds=1),
                                                maximum_interval=timedelta(seconds=30),
                                                non_retryable_error_types=["DeliveryNotStored"])
    assert retries.FAN_OUT_RETRY.maximum_attempts == 0  # a stored delivery reaches its messages, however long
    assert retries.EXPORT_RETRY == RetryPolicy(maximum_attempts=3, non_retryable_error_types=["ExportError"])
    assert retries.DISPOSITION_RETRY == RetryPolicy(
        initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=2), maximum_attempts=10,
        non_retryable_error_types=["RetentionActive"])
    assert retries.CHECKPOINT_RETRY == RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=10)
    assert retries.RETRIEVAL_RETRY == RetryPolicy(initial_interval=timedelta(seconds=1),
                                                  maximum_interval=timedelta(minutes=1), maximum_attempts=5)
