"""How a run ends (or is given back): its run status, stop reason and conversation status."""

from dataclasses import dataclass

from app.events.service import storable
from app.models import ExecutionStatus, RunStatus
from app.vault.redact import REDACTOR


@dataclass(frozen=True)
class Stop:
    run_status: RunStatus
    stop_reason: str
    conversation_status: ExecutionStatus
    error: str | None = None


FINISHED = Stop(RunStatus.COMPLETED, "finished", ExecutionStatus.FINISHED)
MAX_ITERATIONS = Stop(RunStatus.COMPLETED, "max_iterations", ExecutionStatus.PAUSED)
# Confirmation mode: the step's actions wait for the user (they stay open, unanswered).
WAITING = Stop(
    RunStatus.COMPLETED, "waiting_for_confirmation", ExecutionStatus.WAITING_FOR_CONFIRMATION
)
PAUSED = Stop(RunStatus.CANCELLED, "paused", ExecutionStatus.PAUSED)
INTERRUPTED = Stop(RunStatus.INTERRUPTED, "interrupted", ExecutionStatus.PAUSED)
# Shutdown: the run goes back to the queue (any worker continues it from its events), or,
# when a tool call was cut off half-way and may have had effects, it is paused for a person.
GIVE_BACK = Stop(RunStatus.QUEUED, "shutdown", ExecutionStatus.RUNNING)
CUT_OFF = Stop(RunStatus.CANCELLED, "shutdown", ExecutionStatus.PAUSED)


def failed(error: str) -> Stop:
    """A failed run; `error` is recorded with every known credential masked, storable."""
    return Stop(RunStatus.FAILED, "error", ExecutionStatus.ERROR, storable(REDACTOR.redact(error)))


def unanswered(tool: str, stop: Stop) -> str:
    """The error of an AgentErrorEvent for a tool call left without an answer by `stop`."""
    if stop.stop_reason == "shutdown":
        return (
            f"the {tool} call was cut off by a server shutdown: it may have run in part or in "
            "full, and it was not run again"
        )
    return f"the {tool} call was not completed: run {stop.stop_reason}"
