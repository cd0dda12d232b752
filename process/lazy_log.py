"""A module logger that imports logging on its first message.

Why: importing logging (with traceback, string and weakref) cost every run about
4 ms, and a run that goes well logs nothing from process/.  `log.warning(...)`
reads as it would with `logging.getLogger(__name__)`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any



class LazyLogger:
    """`logging.getLogger(name)`, looked up when a message is logged."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import logging

        return getattr(logging.getLogger(self._name), attr)
