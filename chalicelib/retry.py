"""How many attempts a task gets and how long it waits between them."""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_seconds: float = 2.0
    max_seconds: float = 300.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff after attempt number `attempt` (1, 2, ...)."""
        return min(self.base_seconds * 2 ** (attempt - 1), self.max_seconds)

    def for_action(self, declared) -> "RetryPolicy":
        """This policy with what an action declares (an `Action`, or None) put over it."""
        if declared is None:
            return self
        overrides = {name: value for name, value in (("max_attempts", declared.max_attempts),
                                                     ("base_seconds", declared.retry_base_s),
                                                     ("max_seconds", declared.retry_max_s))
                     if value is not None}
        return replace(self, **overrides) if overrides else self
