"""The --out folder: pictures, results.jsonl and summary.json, written so that a run killed
at any moment (kill -9, the OOM killer) leaves only whole files and whole lines behind.

- Each picture is written under .partial/ and renamed into place: a reader never sees
  half a mask.
- A photo is finished once its line is in results.jsonl, appended after its pictures with
  one write and an fsync; a line cut short by a kill is removed on the next start.
- A run started again with the same input and model scores only unfinished photos; at
  the end results.jsonl is rewritten sorted by photo, so an interrupted run's file equals
  an uninterrupted one's.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

from batch.scoring import Outcome

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
# What a resumed run must share with the run that began the folder.
RUN = "run.json"


class OutputError(ValueError):
    """--out cannot take this run's results."""


class OutputFolder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.partial = root / ".partial"
        self._append_lock = threading.Lock()
        self._results_fd = -1
        self._lock_fd = -1

    def open(self, run: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Claim the folder for `run` and return its finished lines by photo; raises
        OutputError when another run holds it or began it with other settings."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"--out {self.root} cannot be created ({error.strerror}).") from None
        self._lock_fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"Another run is writing to {self.root}.") from None
        shutil.rmtree(self.partial, ignore_errors=True)  # what a killed run was writing
        self.partial.mkdir()
        self._check_run(run)
        results = self.root / RESULTS
        self._results_fd = os.open(results, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        return {line["photo"]: line for line in self._recover()}

    def record(self, outcome: Outcome) -> None:
        """Write a photo's pictures, then its line: the line says they are whole."""
        for kind, data in outcome.pictures.items():
            self.write(outcome.line["files"][kind], data)
        data = (json.dumps(outcome.line) + "\n").encode()
        with self._append_lock:
            if os.write(self._results_fd, data) != len(data):
                raise OSError(f"{RESULTS} took only part of a line; the disk may be full")
            os.fsync(self._results_fd)

    def finish(self) -> list[dict[str, Any]]:
        """Rewrite results.jsonl sorted by photo, and return its lines."""
        lines = sorted(self._recover(), key=lambda line: line["photo"])
        self.write(RESULTS, "".join(json.dumps(line) + "\n" for line in lines).encode())
        return lines

    def close(self) -> None:
        for fd in (self._results_fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)
        self._results_fd = self._lock_fd = -1
        shutil.rmtree(self.partial, ignore_errors=True)

    def write(self, relative: str, data: bytes) -> None:
        """`data` at `relative` under the folder, whole or not at all."""
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.partial / uuid.uuid4().hex
        temporary.write_bytes(data)
        os.replace(temporary, target)

    def _check_run(self, run: dict[str, Any]) -> None:
        recorded = self.root / RUN
        if not recorded.is_file():
            self.write(RUN, (json.dumps(run, indent=2) + "\n").encode())
            return
        before = json.loads(recorded.read_text())
        changed = [key for key in run if before.get(key) != run[key]]
        if changed:
            raise OutputError(
                f"{self.root} holds a run begun with other settings ({', '.join(changed)}); "
                "run it again with the same input, model and options, or choose another --out."
            )

    def _recover(self) -> list[dict[str, Any]]:
        """The whole lines of results.jsonl, after cutting off a line a kill left half
        written."""
        with open(self._results_fd, "rb", closefd=False) as file:
            file.seek(0)
            data = file.read()
        whole = data.rfind(b"\n") + 1
        if whole < len(data):
            os.ftruncate(self._results_fd, whole)
        lines = []
        for text in data[:whole].splitlines():
            try:
                line = json.loads(text)
            except ValueError:
                line = None
            # A line damaged outside this program is dropped, and its photo redone.
            if isinstance(line, dict) and isinstance(line.get("photo"), str):
                lines.append(line)
        return lines
