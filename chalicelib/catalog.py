"""The declared actions as this service applies them: which names it takes, what
data each accepts, and the limits in force once the global settings are applied."""
from __future__ import annotations

from typing import Mapping, Optional

from chalicelib.actions import Action, DataMismatch, SchemaError
from chalicelib.retry import RetryPolicy
from chalicelib.settings import ConfigurationError
from chalicelib.validation import InvalidInput, NewTask


class Catalog:
    def __init__(self, actions: Mapping[str, Action], retry: RetryPolicy, reject_unknown: bool = False) -> None:
        self._actions = actions  # read live: a test may declare an action after this is built
        self._retry = retry
        self.reject_unknown = reject_unknown

    def check(self, new: NewTask) -> None:
        """Raise InvalidInput (a 400 naming what to fix) for data its action's schema
        does not accept, or for an unknown action when those are refused."""
        declared = self._actions.get(new.action)
        if declared is None:
            if self.reject_unknown:
                raise InvalidInput(f"unknown action {new.action!r}: use one of {', '.join(sorted(self._actions))}",
                                   pointer="/action")
            return
        try:
            declared.check(new.data)
        except DataMismatch as exc:
            raise InvalidInput(str(exc), pointer=exc.pointer) from None

    def action(self, name: str) -> Optional[Action]:
        """The action declared under `name`; None for one that is not (it runs as the seed's "processed")."""
        return self._actions.get(name)

    def policy(self, name: str) -> RetryPolicy:
        return self._retry.for_action(self._actions.get(name))

    def check_receive_count(self, max_receive_count: int) -> None:
        """Raise ConfigurationError when an action's attempts reach the queue's receive
        count: the queue would dead-letter its message before the worker gives up."""
        for name in sorted(self._actions):
            attempts = self.policy(name).max_attempts
            if attempts >= max_receive_count:
                raise ConfigurationError(
                    f"action {name} declares max_attempts={attempts}, which must be less than "
                    f"TASKS_MAX_RECEIVE_COUNT ({max_receive_count}); raise TASKS_MAX_RECEIVE_COUNT (and the "
                    "queue's maxReceiveCount) or lower max_attempts")

    def compile_schemas(self) -> None:
        """Compile every declared schema now, raising ConfigurationError for one that
        cannot be: the service then refuses to start (`chalice local`), or fails its
        first request with the sentence in the log (Lambda), rather than answering
        every submit of that action with a 500."""
        for name in sorted(self._actions):
            try:
                self._actions[name].compile()
            except SchemaError as exc:
                raise ConfigurationError(str(exc)) from None

    def describe(self) -> dict:
        """GET /actions: each action's schema and the limits that apply to it."""
        listed = []
        for name in sorted(self._actions):
            declared = self._actions[name]
            policy = self.policy(name)
            listed.append({
                "name": name, "description": declared.description, "schema": declared.schema,
                "max_attempts": policy.max_attempts, "retry_base_s": policy.base_seconds,
                "retry_max_s": policy.max_seconds, "timeout_s": declared.timeout_s,
            })
        return {"actions": listed, "unknown_actions": "reject" if self.reject_unknown else "accept"}
