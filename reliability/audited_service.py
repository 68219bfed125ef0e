"""`python -m reliability.audited_service`: the service, watched from inside by audit hooks.

For the security check. Before anything of the service is imported, this installs a
`sys.addaudithook` hook and wraps pickle's loaders, then runs `python -m service` as
usual. When the process ends (SIGTERM included) it writes what it saw as JSON to
$RELIABILITY_AUDIT_REPORT: unpickling of any kind, imports of torch and the pipeline,
files opened for writing, and checkpoint-like files opened at all.
"""

from __future__ import annotations

import atexit
import json
import os
import pickle
import sys
from collections.abc import Callable
from typing import Any

FORBIDDEN_MODULES = frozenset(
    ["torch", "torchvision", "fastai", "training", "export", "dill", "joblib", "cloudpickle"]
)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

seen: dict[str, list[str]] = {
    "unpickled_globals": [],
    "pickle_loads": [],
    "forbidden_imports": [],
    "opened_for_writing": [],
    "checkpoint_files_opened": [],
}


def main() -> int:
    sys.addaudithook(_hook)
    _wrap_pickle()
    atexit.register(_write_report)
    from service.__main__ import main as serve

    return serve()


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event == "pickle.find_class":
        seen["unpickled_globals"].append(f"{args[0]}.{args[1]}")
    elif event == "import":
        if str(args[0]).split(".")[0] in FORBIDDEN_MODULES:
            seen["forbidden_imports"].append(str(args[0]))
    elif event == "open":
        path, mode, flags = args
        if not isinstance(path, str | bytes | os.PathLike):
            return  # a file descriptor, not a path
        name = os.fsdecode(path)
        writing = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & _WRITE_FLAGS)
        # Python caches compiled modules on import; that is not the service writing.
        if writing and "__pycache__" not in name and name != _report_path():
            seen["opened_for_writing"].append(name)
        if name.endswith(CHECKPOINT_SUFFIXES):
            seen["checkpoint_files_opened"].append(name)


def _wrap_pickle() -> None:
    """Count every call of pickle's loaders, even of data without globals."""

    def counted(name: str, loader: Callable[..., Any]) -> Callable[..., Any]:
        def load(*args: Any, **kwargs: Any) -> Any:
            seen["pickle_loads"].append(name)
            return loader(*args, **kwargs)

        return load

    pickle.load = counted("pickle.load", pickle.load)
    pickle.loads = counted("pickle.loads", pickle.loads)


def _report_path() -> str:
    return os.environ.get("RELIABILITY_AUDIT_REPORT", "")


def _write_report() -> None:
    if _report_path():
        text = json.dumps(seen, indent=2)
        with open(_report_path(), "w") as report:
            report.write(text)


if __name__ == "__main__":
    sys.exit(main())
