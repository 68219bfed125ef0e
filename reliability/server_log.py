"""What the reliability checks read in the log of a server they stopped."""

from __future__ import annotations


def shutdown_problems(log: str, exit_code: int) -> list[str]:
    """What a check reports about a server it stopped: failures in its log, a bad exit."""
    problems = [f"server log: {line}" for line in log_problems(log)]
    if exit_code != 0:
        problems.append(f"the server exited with {exit_code} on SIGTERM")
    return problems


def log_problems(log: str) -> list[str]:
    """Lines of a server log that show a request failing inside the server."""
    markers = ("Traceback", "Exception in ASGI application", "Segmentation fault", "core dumped")
    return [line for line in log.splitlines() if any(marker in line for marker in markers)]
