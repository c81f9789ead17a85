"""One scenario on a running stack: start the load, inject the fault at a random moment during it,
let Meta's redelivery run out, then verify."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

from chaos.load import Load, LoadSettings
from chaos.scenarios import Scenario
from chaos.stack import APP_SECRET, ChaosStack
from chaos.verify import Fault, Verdict, verify


@dataclass
class RetryPolicy:
    """The media retry policy the workers run with (WA_ARCHIVE_RETRY_*), to judge whether a fault
    outlasted the five attempts."""

    max_attempts: int = 5
    initial: float = 10.0
    backoff: float = 2.0
    maximum: float = 600.0

    @classmethod
    def from_env(cls, env: dict[str, str]) -> RetryPolicy:
        def get(name: str, default: float) -> float:
            return float(env.get(f"WA_ARCHIVE_RETRY_{name}", default))
        return cls(max_attempts=int(get("MAX_ATTEMPTS", 5)), initial=get("INITIAL_INTERVAL", 10.0),
                   backoff=get("BACKOFF", 2.0), maximum=get("MAX_INTERVAL", 600.0))

    @property
    def window(self) -> float:
        """Seconds from a media item's first attempt to its last (the waits between the attempts)."""
        return sum(min(self.initial * self.backoff ** k, max(self.maximum, self.initial))
                   for k in range(self.max_attempts - 1))


async def run_scenario(stack: ChaosStack, scenario: Scenario, load_settings: LoadSettings, *,
                       fault_seconds: float | None = None, seed: int = 0,
                       settle_timeout: float = 600) -> dict[str, Any]:
    seconds = scenario.default_seconds if fault_seconds is None else fault_seconds
    rng = random.Random(f"{seed}:{scenario.name}")
    load = Load(stack.graph, stack.webhook_urls, APP_SECRET, load_settings, in_flight=stack.in_flight)
    started = time.monotonic()
    load_task = asyncio.create_task(load.run())
    fault: Fault | None = None
    error: str | None = None
    try:
        # The fault starts at a random moment in the first half of the load's sending time.
        sending = load_settings.deliveries / load_settings.rate
        await asyncio.sleep(rng.uniform(0.1, 0.5) * sending)
        fault = await scenario.inject(stack, seconds)
    except Exception as exc:  # a fault that could not be injected fails the scenario, never passes it
        error = f"fault not injected: {type(exc).__name__}: {exc}"
    deliveries = await load_task
    if fault is None:
        return {"name": scenario.name, "summary": scenario.summary, "passed": False, "problems": [error],
                "figures": {"sent": len(deliveries)}}
    policy = RetryPolicy.from_env(stack.env())
    fault.outlasts_retries = fault.ended - fault.started > policy.window
    verdict: Verdict = await verify(stack, deliveries, fault, settle_timeout=settle_timeout,
                                    retry_max_attempts=policy.max_attempts)
    figures = {**verdict.figures, "retry_window_s": round(policy.window, 1),
               "fault_outlasted_retries": fault.outlasts_retries, "run_s": round(time.monotonic() - started, 1)}
    return {"name": scenario.name, "summary": scenario.summary, "passed": verdict.passed,
            "problems": verdict.problems, "figures": figures}
