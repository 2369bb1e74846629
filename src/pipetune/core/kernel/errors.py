"""Errors that reach users.

Every error a user can cause (a broken pipeline, a malformed config, a missing optional
dependency) is a :class:`PipetuneError`: the CLI prints its message and exits with
``exit_code`` instead of showing a traceback from deep inside.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class PipetuneError(Exception):
    """An error with a message meant for the user. The CLI exits with ``exit_code``."""

    exit_code = 2


class ConfigError(PipetuneError):
    """Malformed configuration, options or input files."""


class ParamsError(ConfigError):
    """A change's params do not fit its change type's schema, or were saved under a schema
    version the installed plugin cannot read. Names the change, the key or the versions."""


class PipelineError(PipetuneError):
    """A pipeline that cannot be built or run as declared."""


class StageError(PipelineError):
    """A stage raised on an input. Names the stage, the input and the exception."""

    def __init__(self, stage: str, index: int | None, item: object, exc: BaseException):
        self.stage = stage
        self.index = index
        self.item = item
        self.exc = exc
        where = f"input #{index}" if index is not None else "an input"
        if isinstance(exc, SystemExit):  # pipetune's exit status is its own, not a stage's
            super().__init__(
                f"stage {stage!r} called sys.exit({exc.code!r}) on {where} "
                f"({short_repr(item)}): a stage must return a value or raise, never end "
                "the process"
            )
            return
        super().__init__(
            f"stage {stage!r} raised {type(exc).__name__} on {where} ({short_repr(item)}): {exc}"
        )

    def renumbered(self, indices: Sequence[int] | None) -> StageError:
        """The same error naming input ``indices[index]``: a run over a split of the
        workload names the input by its place in the whole workload."""
        if indices is None or self.index is None or not 0 <= self.index < len(indices):
            return self
        if isinstance(self, StageTimeout):
            moved: StageError = StageTimeout(
                self.stage, indices[self.index], self.item, self.timeout_s
            )
        else:
            moved = StageError(self.stage, indices[self.index], self.item, self.exc)
        moved.__cause__ = self.__cause__
        return moved


class StageTimeout(StageError):
    """A stage did not finish within the allowed time."""

    def __init__(self, stage: str, index: int | None, item: object, timeout_s: float):
        self.timeout_s = timeout_s
        super().__init__(stage, index, item, TimeoutError(f"no result after {timeout_s:g} s"))


class PluginError(PipetuneError):
    """A plugin failed to load, raised from a hook, or broke a contract."""


class DuplicateError(PluginError):
    """Two plugins registered the same proposal id, backend or rule name."""


class MissingDependency(PipetuneError):
    """An optional dependency is not installed. Carries the install command."""

    def __init__(self, module: str, extra: str | None = None, purpose: str = ""):
        self.module = module
        self.extra = extra
        self.install = install_command(module, extra)
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"{module} is not installed{what}; install it with: {self.install}")


class Rejected(PipetuneError):
    """Raised by a plugin's tune step when a proposal must not be applied.

    The validator records the trial as rejected with this message as the reason (for
    example: the fast tokenizer gives different ids on input #12).
    """


class Deferred(PipetuneError):
    """Raised by a plugin's tune step when a change can be validated only on another
    machine: a Core ML package needs a Mac to predict, a TensorRT engine needs an NVIDIA
    GPU with ``tensorrt``. Everything this machine can check has been checked.

    The validator records the trial as ``deferred`` (not accepted, not rejected) with
    ``artifact`` (what was built, a path) and ``command`` (what to run on the target
    machine to finish the validation), and does not apply the change here.
    """

    def __init__(
        self,
        reason: str,
        *,
        artifact: str | None = None,
        command: str | None = None,
        details: dict[str, object] | None = None,
    ):
        self.reason = reason
        self.artifact = artifact
        self.command = command
        self.details = dict(details or {})
        super().__init__(reason)


class StoreError(PipetuneError):
    """The run store is corrupted, locked or unwritable."""


def read_json_file(path: str | Path, what: str) -> Any:
    """The parsed JSON file at ``path``; a :class:`ConfigError` naming it as ``what``
    (``recipe``, ``trace``) when it cannot be read or is not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid JSON: {exc}") from None


def install_command(module: str, extra: str | None) -> str:
    if extra:
        return f'pip install "pipetune[{extra}]"'
    return f"pip install {module}"


def short_repr(item: object, limit: int = 80) -> str:
    """A one-line, bounded repr for error messages (inputs can be megabytes)."""
    try:
        text = repr(item)
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{type(item).__name__}>"
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
