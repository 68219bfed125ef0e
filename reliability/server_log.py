"""What the reliability checks read in the log of a server they stopped."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.server import Server
    from reliability.report import CheckResult


def shutdown_problems(log: str, exit_code: int) -> list[str]:
    """What a check reports about a server it stopped: failures in its log, a bad exit."""
    problems = [f"server log: {line}" for line in log_problems(log)]
    if exit_code != 0:
        problems.append(f"the server exited with {exit_code} on SIGTERM")
    return problems


def record_shutdown_problems(result: CheckResult, server: Server, exit_code: int) -> None:
    """Fail `result` once for each of the `shutdown_problems` of a stopped `server`.

    Takes the `exit_code` of `server.stop()` rather than stopping here: checks stop the server
    in a `finally` and some judge their own figures before these problems are added.
    """
    for problem in shutdown_problems(server.log(), exit_code):
        result.fail(problem)


def log_problems(log: str) -> list[str]:
    """Lines of a server log that show a request failing inside the server."""
    markers = ("Traceback", "Exception in ASGI application", "Segmentation fault", "core dumped")
    return [line for line in log.splitlines() if any(marker in line for marker in markers)]
