"""Names shared by the webhook, workflows and activities: activity names and search attributes.

Imported inside the workflow sandbox, so only temporalio.common is used here.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

ARCHIVE_MEDIA = "archive_media"
VERIFY_MESSAGE = "verify_message"
WRITE_RECORDS = "write_records"
RECORD_CRITICAL_FAILURE = "record_critical_failure"
FAN_OUT_DELIVERY = "fan_out_delivery"
ARCHIVE_LINK_MEDIA = "archive_link_media"
ARCHIVE_ENCRYPTED_MEDIA = "archive_encrypted_media"
SNAPSHOT_TEMPLATE = "snapshot_template"
READ_STORED_OUTBOUND = "read_stored_outbound"
WRITE_OUTBOUND = "write_outbound"
EXPORT_BUNDLE = "export_bundle"
SAMPLE_MEDIA = "sample_media"
CHECK_OBJECTS = "check_objects"
REQUEST_RESTORE = "request_restore"
SAVE_RETRIEVAL_REPORT = "save_retrieval_report"
RETRIEVAL_SCHEDULE_ID = "wa-archive-retrieval-test"
WRITE_CHECKPOINT = "write_checkpoint"
CHECKPOINT_SCHEDULE_ID = "wa-archive-ledger-checkpoint"
PREPARE_DISPOSITION = "prepare_disposition"
DISPOSE_BATCH = "dispose_batch"
SETTLE_ERASURES = "settle_erasures"
DISPOSITION_SCHEDULE_ID = "wa-archive-disposition"
RECONCILE_DAY = "reconcile_day"
RECONCILIATION_SCHEDULE_ID = "wa-archive-reconciliation"

# Signals of the OutboundMessage workflow.
SIGNAL_SEND = "record_send"
SIGNAL_STATUS = "status"
# A delivery carried the message whole (an echo from the WhatsApp Business app): no send record will come.
SIGNAL_SUPERSEDED = "recorded_from_delivery"

# Search attributes are stored unencrypted: statuses, and keyed hashes of the message id and of the
# contact (keys.message_key, keys.contact_key) instead of ids that carry a phone number. The names
# are a public contract (saved queries, dashboards): WhatsAppMessageId keeps its name, not its value.
MESSAGE_ID = SearchAttributeKey.for_keyword("WhatsAppMessageId")
ARCHIVE_STATUS = SearchAttributeKey.for_keyword("ArchiveStatus")
CONTACT_KEY = SearchAttributeKey.for_keyword("WhatsAppContactKey")
SEARCH_ATTRIBUTES = [MESSAGE_ID, ARCHIVE_STATUS, CONTACT_KEY]

# Capture health: the periodic silence check.
CHECK_CAPTURE_HEALTH = "check_capture_health"
CAPTURE_HEALTH_SCHEDULE_ID = "wa-archive-capture-health"

# The self-healing intake: deliveries stored but never handed to Temporal, handed over on a Schedule.
REDRIVE_DELIVERIES = "redrive_deliveries"
REDRIVE_SCHEDULE_ID = "wa-archive-redrive"

# Batched sequencing of the ledger: the integrator numbers leaf candidates into the log on a Schedule.
INTEGRATE_LEDGER = "integrate_ledger"  # one pass (runs started without input, as before)
INTEGRATE_LEDGER_UNTIL = "integrate_ledger_until"  # a pass every interval for the length of a run
LEDGER_INTEGRATE_SCHEDULE_ID = "wa-archive-ledger-integrate"
