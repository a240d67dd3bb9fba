"""Errors a learner can read: one line, no stack trace needed to understand them."""
from __future__ import annotations


class TLCoreError(Exception):
    """Base of every error tlcore raises on purpose. `str(err)` is one user-facing line."""


class DatasetError(TLCoreError):
    """The data cannot be used as given (bad archive, too few classes, no readable images, ...)."""


class DownloadRequired(TLCoreError):
    """Something must be downloaded first and the network (or the file) is not there."""

    def __init__(self, what: str, source: str, detail: str = "") -> None:
        self.what, self.source = what, source
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{what} needs a download from {source} and it is not available offline{extra}")


class DamagedDownload(DownloadRequired):
    """A downloaded file is in its cache but cannot be read: it has to go before a download can help."""

    def __init__(self, what: str, path: str, detail: str) -> None:
        self.what, self.source = what, path
        TLCoreError.__init__(self, f"the cached {what} at {path} is damaged and cannot be loaded ({detail}): "
                                   "delete that file to download it again")


class PlanError(TLCoreError, ValueError):
    """An invalid plan. `field` names the plan field at fault so a UI can show it beside the control."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


class NotOwner(TLCoreError, PermissionError):
    """An action that changes a run (stop, delete, rename) asked for by someone who does not own it."""

    def __init__(self, run_id: str, action: str) -> None:
        self.run_id, self.action = run_id, action
        super().__init__(f"only the owner of run {run_id} can {action} it")
