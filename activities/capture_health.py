"""check_capture_health: open and close silence episodes as of the workflow's clock."""

import asyncpg
from temporalio import activity

from wa_archive.config import Settings
from wa_archive.health.capture import check_silences, read_health
from wa_archive.health.capture_report import CaptureCheckInput, CaptureHealthReport
from wa_archive.names import CHECK_CAPTURE_HEALTH


class CaptureHealthActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings

    @activity.defn(name=CHECK_CAPTURE_HEALTH)
    async def check_capture_health(self, inp: CaptureCheckInput) -> CaptureHealthReport:
        """Every watched number's state; an episode opened or closed is logged by the check itself."""
        settings = self.settings
        if settings.silence_alert_minutes is None:  # switched off since the schedule started this run
            return await read_health(self.pool, alert_minutes=None, hours=settings.silence_hours,
                                     hours_text=settings.silence_active_hours, listed=settings.silence_listed,
                                     now=inp.now)
        return await check_silences(self.pool, alert_minutes=settings.silence_alert_minutes,
                                    hours=settings.silence_hours, hours_text=settings.silence_active_hours,
                                    listed=settings.silence_listed, now=inp.now)
