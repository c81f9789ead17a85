"""Every retry policy of the workflows, named in one place.

A policy travels in the command that schedules an activity and replay does not compare it, so a
change here applies to activities scheduled from then on without breaking a running workflow.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from wa_archive import errors
    from wa_archive.models import ArchiveOptions

# Temporal matches non_retryable_error_types against the failing exception's class NAME, so a policy
# carries names; errors.py derives the one list from its classes, so a renamed or moved class cannot
# quietly become retryable.
NON_RETRYABLE: tuple[str, ...] = errors.NON_RETRYABLE


def _never_retried(*names: str) -> list[str]:
    """The named entries of NON_RETRYABLE: a policy can only stop retrying what the errors say no retry fixes."""
    unknown = [name for name in names if name not in NON_RETRYABLE]
    if unknown:
        raise ValueError(f"not a non-retryable error: {', '.join(unknown)}")
    return list(names)


# Media and template snapshots: every source or storage error no retry fixes.
_MEDIA_NEVER_RETRIED = [name for name in NON_RETRYABLE
                        if issubclass(getattr(errors, name), (errors.SourceError, errors.StorageError))]

# Postgres writes retry until Postgres is back: failing them would lose nothing but would turn a
# short database outage into a pile of red workflows. The media step has the bounded policy.
DB_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))

# An acknowledged delivery must reach its messages, however long Postgres or Temporal take to come back.
# A delivery that is not stored never will be: that run ends instead of retrying forever.
FAN_OUT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30),
                            non_retryable_error_types=_never_retried("DeliveryNotStored"))

EXPORT_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=_never_retried("ExportError"))

# An object under retention or hold stays; the next scheduled run looks again.
DISPOSITION_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=2),
                                maximum_attempts=10, non_retryable_error_types=_never_retried("RetentionActive"))

CHECKPOINT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=10)

# Reading the archive back: bounded, so a broken store turns the retrieval test red instead of stalling it.
RETRIEVAL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1),
                              maximum_attempts=5)

# The daily reconciliation reads Postgres and Meta's analytics: retried through an outage of a few hours,
# then red, so a day is never silently left unreconciled.
RECONCILE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=10),
                              maximum_attempts=30)


def media_retry(opts: ArchiveOptions) -> RetryPolicy:
    """The bounded rule for media and templates, from the options fixed when the workflow started."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=opts.retry_initial_interval),
        backoff_coefficient=opts.retry_backoff,
        maximum_interval=timedelta(seconds=max(opts.retry_max_interval, opts.retry_initial_interval)),
        maximum_attempts=opts.retry_max_attempts,
        non_retryable_error_types=_MEDIA_NEVER_RETRIED,
    )

# A run started without input integrates once, and the next does so again: a few quick attempts.
# The ledger's integrator and checkpoint activities beat on a timer (activities/heartbeats.py): an attempt
# whose worker died is given up within this, so neither its run nor the Schedule's next start (which waits
# for the run) is stalled for the whole timeout.
LEDGER_RUN_HEARTBEAT = timedelta(seconds=10)

INTEGRATE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5),
                              maximum_attempts=3)
# Within one of the Schedule's long runs (workflows/ledger_integrate.py), a failed attempt (the database
# away, a worker killed) is retried for as long as the run lasts: the next run is minutes away, but the
# integration lag is bounded in seconds.
INTEGRATE_UNTIL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5))
