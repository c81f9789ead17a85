"""What the capture-health check takes and reports (workflow input and result, CLI JSON)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class CaptureCheckInput(BaseModel):
    """The instant to judge silence at: the workflow's clock, so a replay judges the same instant."""

    now: datetime


class NumberHealth(BaseModel):
    """One watched business number."""

    number: str  # a Meta phone_number_id, or `wasender`
    source: str
    display_number: str | None
    last_webhook_at: datetime | None  # None: listed in the settings and never heard
    silent: bool  # more active-hours time than the limit has passed since the last webhook
    silent_since: datetime | None  # of the open episode
    detected_at: datetime | None  # of the open episode


class CaptureHealthReport(BaseModel):
    checked_at: datetime
    alert_minutes: float | None  # None: silence alerts are off
    active_hours: str
    active_now: bool
    numbers: list[NumberHealth] = Field(default_factory=list)
    started: list[str] = Field(default_factory=list)  # numbers whose episode this check opened
    ended: list[str] = Field(default_factory=list)  # numbers whose episode this check closed

    @property
    def silent(self) -> list[str]:
        return [n.number for n in self.numbers if n.silent]
