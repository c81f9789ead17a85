"""Pydantic models that cross a boundary: workflow and activity inputs and outputs.

Workflows import this module inside the Temporal sandbox, so it uses only pydantic and the stdlib.
One model per call lets fields with defaults be added later without breaking running histories.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

# Longer than any identifier WhatsApp gives out (a BSUID, a JID or LID, a username), and short enough
# for the btree indexes over identifiers (messages, contact_links) and for an object key.
MAX_IDENTIFIER = 256


class Contact(BaseModel):
    """Every identifier a payload gives for the other party; any of them may be missing."""

    phone: str | None = None
    wa_id: str | None = None
    user_id: str | None = None
    parent_user_id: str | None = None
    username: str | None = None
    name: str | None = None

    @field_validator("phone", "wa_id", "user_id", "parent_user_id", "username", mode="before")
    @classmethod
    def _identifier(cls, value: object) -> object:
        """An identifier too long to be one names no one: left out (the stored payload keeps it), so
        that it can neither fail the message's write nor be matched against anybody."""
        return None if isinstance(value, str) and len(value) > MAX_IDENTIFIER else value

    def path_segment(self) -> str:
        """The identifier used in object keys: the phone where there is one."""
        return self.phone or self.wa_id or self.user_id or self.username or "unknown"


class EncryptedMedia(BaseModel):
    """WhatsApp's end-to-end encrypted media as a WhatsApp-Web source (WASenderApi) forwards it."""

    message_field: str  # imageMessage, documentMessage, … (for WASender's decrypt-media endpoint)
    url: str | None = None
    direct_path: str | None = None
    media_key: str  # base64; the decryption secret
    file_enc_sha256: str | None = None  # base64, over the encrypted download (MAC included)
    file_length: int | None = None  # of the plaintext


class MediaRef(BaseModel):
    """A media item as the webhook declares it."""

    media_id: str
    kind: str
    mime_type: str | None = None
    provider_sha256: str | None = None
    filename: str | None = None
    url: str | None = None
    caption: str | None = None
    # A public URL chosen by the sender (outbound media by link), fetched with SSRF guards instead
    # of through the Graph API.
    link: str | None = None
    encrypted: EncryptedMedia | None = None  # fetched encrypted and decrypted while streaming


class ArchiveOptions(BaseModel):
    """Retry and timeout settings, fixed when the workflow starts so replays see the same values."""

    retry_max_attempts: int = 5
    retry_initial_interval: float = 10.0
    retry_backoff: float = 2.0
    retry_max_interval: float = 600.0
    heartbeat_timeout: float = 30.0
    attempt_timeout: float = 1800.0


class ArchiveRequest(BaseModel):
    """Input of the ArchiveMessage workflow: one normalized message."""

    message_id: str
    delivery_sha256: str
    source: str = "meta"
    direction: Literal["in", "out"] = "in"
    type: str
    timestamp: datetime
    raw_timestamp: str | None = None
    phone_number_id: str | None = None
    display_phone_number: str | None = None
    waba_id: str | None = None
    contact: Contact = Field(default_factory=Contact)
    text: str | None = None
    related_message_id: str | None = None
    flags: list[str] = Field(default_factory=list)
    payload: dict[str, Any] = Field(default_factory=dict)
    media: list[MediaRef] = Field(default_factory=list)
    options: ArchiveOptions = Field(default_factory=ArchiveOptions)


class ArchiveMediaInput(BaseModel):
    """Input of the archive_media activity."""

    message_id: str
    timestamp: datetime
    contact_segment: str
    position: int
    media: MediaRef
    business_scopes: list[str] = Field(default_factory=lambda: ["*"])  # retention policy scopes
    contact_phone: str | None = None  # legal holds are per contact phone


class MediaRecord(BaseModel):
    """A media row: archived (stored and hash-verified) or failed."""

    media_id: str
    position: int
    kind: str
    status: Literal["archived", "failed"]
    storage_key: str | None = None
    size: int | None = None
    sha256: str | None = None
    provider_sha256: str | None = None
    mime_type: str | None = None  # normalised (media_types.normalize_mime): what is served
    declared_mime_type: str | None = None  # as the provider or sender declared it, verbatim
    filename: str | None = None
    stored_at: datetime | None = None
    retain_until: datetime | None = None  # as written on the object
    legal_hold: bool = False  # the object was written under legal hold


class WriteRecordsInput(BaseModel):
    """Input of the write_records activity: the message and the outcome of each media item."""

    request: ArchiveRequest
    media: list[MediaRecord] = Field(default_factory=list)
    archive_status: Literal["archived", "failed"] = "archived"


class CriticalFailureInput(BaseModel):
    """Input of the record_critical_failure activity."""

    message_id: str
    stage: str
    media_id: str | None = None
    workflow_id: str
    run_id: str
    retry_state: str | None = None
    last_error_type: str | None = None
    last_error: str | None = None


class ArchiveResult(BaseModel):
    """Result of the ArchiveMessage workflow."""

    message_id: str
    # superseded: an OutboundMessage ended because a delivery carried the message whole (an echo)
    status: Literal["archived", "failed", "superseded"]
    media: list[MediaRecord] = Field(default_factory=list)


class IngestDeliveryInput(BaseModel):
    """Input of the IngestDelivery workflow: a webhook delivery already stored in Postgres."""

    delivery_sha256: str


class FanOutResult(BaseModel):
    """What one delivery contained and what was done with it."""

    messages: int = 0
    statuses: int = 0
    events: int = 0
    already_archived: int = 0  # nothing to start: archived, or disposed of


# Outbound ------------------------------------------------------------------------------------


class OutboundOptions(BaseModel):
    """How long an OutboundMessage workflow waits, fixed at start."""

    sent_wait_seconds: float = 600.0
    record_wait_seconds: float = 7 * 24 * 3600.0
    waba_id: str | None = None
    archive: ArchiveOptions = Field(default_factory=ArchiveOptions)


class OutboundStart(BaseModel):
    """Input of the OutboundMessage workflow (it is started by whichever signal comes first)."""

    message_id: str
    options: OutboundOptions = Field(default_factory=OutboundOptions)


class OutboundSend(BaseModel):
    """Signal: the send request and Meta's answer, as the proxy or the record API saw them."""

    message_id: str
    phone_number_id: str
    request: dict[str, Any]
    response: dict[str, Any]
    via: Literal["proxy", "record"]
    recorded_at: datetime


class StatusSignal(BaseModel):
    """Signal: one status webhook of the message (the full object is already in status_events)."""

    status: str
    timestamp: datetime | None = None
    waba_id: str | None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)


class StoredOutbound(BaseModel):
    """What the archive itself stored of an outbound message: the accepted send, if the proxy or the
    record API stored one, and its status webhooks in the order they were stored. OutboundMessage
    decides from this, never from what its signals say (a signal is anyone's on the cluster)."""

    send: OutboundSend | None = None
    statuses: list[StatusSignal] = Field(default_factory=list)


class TemplateSnapshotInput(BaseModel):
    message_id: str
    waba_id: str
    send_template: dict[str, Any]


class TemplateSnapshotResult(BaseModel):
    sha256: str
    name: str
    language: str
    rendered_text: str


class WriteOutboundInput(BaseModel):
    """Input of write_outbound: everything known about one outbound message."""

    message_id: str
    timestamp: datetime
    type: str
    contact: Contact = Field(default_factory=Contact)
    phone_number_id: str | None = None
    waba_id: str | None = None
    text: str | None = None
    template: TemplateSnapshotResult | None = None
    template_name: str | None = None
    template_language: str | None = None
    flags: list[str] = Field(default_factory=list)
    payload: dict[str, Any] = Field(default_factory=dict)
    media: list[MediaRecord] = Field(default_factory=list)
    archive_status: Literal["archived", "failed"] = "archived"


class ExportInput(BaseModel):
    """Input of the ExportBundle workflow."""

    export_id: str
    phone: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    actor: str
    role: str


class ExportOutput(BaseModel):
    export_id: str
    storage_key: str
    sha256: str
    size: int
    messages: int
    media: int


# Retrieval test --------------------------------------------------------------------------------


class RetrievalTestInput(BaseModel):
    sample_size: int = 100
    restore_poll_seconds: float = 900.0


class RetrievalItem(BaseModel):
    """One archived object picked for the test."""

    archive_id: str
    message_id: str
    storage_key: str
    sha256: str
    size: int
    stored_at: datetime | None = None


class RetrievalCheck(BaseModel):
    """What reading one object back showed."""

    item: RetrievalItem
    status: Literal["passed", "failed", "restore_needed"]
    problem: str | None = None
    read_ms: float | None = None


class RetrievalBatch(BaseModel):
    items: list[RetrievalItem]


class RetrievalReport(BaseModel):
    workflow_id: str
    run_id: str
    started_at: datetime
    finished_at: datetime
    sample_size: int
    passed: int
    failed: int
    slowest_ms: float | None = None
    checks: list[RetrievalCheck] = Field(default_factory=list)


class DispositionInput(BaseModel):
    """One Disposition run: how many messages per batch (activity), optionally one contact only."""

    batch: int = 200
    phone: str | None = None


class DispositionBatch(BaseModel):
    removed: int = 0
    bytes: int = 0
    deferred: list[str] = Field(default_factory=list)  # due by the rows, still refused by the store
    more: bool = False


class DispositionReport(BaseModel):
    removed: int = 0
    bytes: int = 0
    deferred: list[str] = Field(default_factory=list)
    erasures_completed: int = 0


# Ledger --------------------------------------------------------------------------------------------


class LedgerIntegrateInput(BaseModel):
    """One run of the ledger's integrator, as its Schedule starts it: integrate every `every` seconds for
    `run_for` seconds (integrity/sequencing.py)."""

    every: float
    run_for: float


class IntegrateUntil(BaseModel):
    """What one integrate_ledger_until activity does: integrate every `every` seconds until `until`."""

    every: float
    until: datetime


class IntegrationRun(BaseModel):
    """What one integrate_ledger_until activity did: how many leaves, and whether it ended early because
    its worker was shutting down (else its own clock said `until` had come)."""

    added: int
    worker_stopping: bool


# Reconciliation -----------------------------------------------------------------------------------


class ReconcileInput(BaseModel):
    """The UTC day to reconcile (YYYY-MM-DD); None: the day before the workflow's start."""

    date: str | None = None


class ReconcileDayInput(BaseModel):
    date: str
    workflow_id: str
    run_id: str


class ReconcileResult(BaseModel):
    """What the workflow returns: the stored report's identity and verdict, and each gap in a line."""

    date: str
    version: int
    status: Literal["green", "red"]
    sha256: str
    checkpoint_tree_size: int | None
    gaps: list[str] = Field(default_factory=list)


# Re-drive ----------------------------------------------------------------------------------------


class RedriveReport(BaseModel):
    """One re-drive run: the deliveries (by SHA-256) it handed to Temporal, those whose hand-off failed
    (tried again by the next run), and whether more were waiting than one batch."""

    redriven: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)
    more: bool = False
    cutoff: datetime  # deliveries stored before it and not handed over were looked for
