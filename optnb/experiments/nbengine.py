"""The runner's papermill engine: it fails a run whose exception an ``ipywidgets.Output`` swallowed.

``Output.__exit__`` prints the traceback into the widget and returns True (ipywidgets#3208), so the
kernel reports the cell as a success and papermill alone would call the run complete. nbclient
emulates the front end's Output widget: while a widget captures a cell's output it registers an
output hook for that cell's message id and routes the cell's outputs into the widget. The client
below watches that routing through nbclient's public API only (``register_output_hook`` /
``remove_output_hook``, ``output`` and the ``on_cell_executed`` callback): an ``error`` message
routed into a widget is copied into the cell's own outputs (where papermill reports it from) and
the cell fails there, unless errors are allowed for it.

``tests/test_nbengine.py`` drives nbclient's own widget emulation through this client without a
kernel, so an nbclient release that changes these hooks fails that test with a message saying what.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from nbclient.exceptions import CellExecutionError
from nbclient.util import run_hook
from nbformat import NotebookNode
from nbformat.v4 import output_from_msg
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.exceptions import PapermillException
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args
from traitlets import Bool

ENGINE_NAME = "optnb"


class GuardedClient(PapermillNotebookClient):
    """papermill's client, plus: an error swallowed by an Output widget fails its cell.

    Widget state must be tracked (nbclient 0.11's Output-widget emulation raises KeyError with
    ``store_widget_state=False``); ``keep_widgets`` decides whether it is written to the notebook.
    """

    keep_widgets = Bool(False, help="write the widget state into the executed notebook").tag(config=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._chained_on_cell_executed = self.on_cell_executed
        self.on_cell_executed = self._fail_on_swallowed_error

    def reset_execution_trackers(self) -> None:
        super().reset_execution_trackers()
        #: message id -> how many Output widgets capture it right now (they nest)
        self._captured: Counter[str] = Counter()
        #: cell index -> content of the first error message an Output widget swallowed
        self._swallowed: dict[int, dict[str, Any]] = {}

    def register_output_hook(self, msg_id: str, hook: Any) -> None:
        super().register_output_hook(msg_id, hook)
        self._captured[msg_id] += 1

    def remove_output_hook(self, msg_id: str, hook: Any) -> None:
        super().remove_output_hook(msg_id, hook)
        self._captured[msg_id] -= 1

    def output(self, outs: list[NotebookNode], msg: dict[str, Any], display_id: str | None,
               cell_index: int) -> NotebookNode | None:
        if msg["msg_type"] == "error" and self._captured[msg["parent_header"].get("msg_id")] > 0:
            self._swallowed.setdefault(cell_index, msg["content"])
            outs.append(output_from_msg(msg))  # visible in the cell, not only inside the widget
        return super().output(outs, msg, display_id, cell_index)

    async def _fail_on_swallowed_error(self, cell: NotebookNode, cell_index: int,
                                       execute_reply: dict[str, Any] | None) -> None:
        await run_hook(self._chained_on_cell_executed, cell=cell, cell_index=cell_index,
                       execute_reply=execute_reply)
        content = self._swallowed.pop(cell_index, None)
        if content is None or (execute_reply or {}).get("content", {}).get("status") == "error":
            return  # nothing swallowed, or the cell failed anyway and nbclient raises for it
        allowed = not self.force_raise_errors and (
            self.allow_errors or content.get("ename") in self.allow_error_names
            or "raises-exception" in cell.metadata.get("tags", [])
        )
        if not allowed:
            raise CellExecutionError.from_cell_and_msg(cell, content)

    def set_widgets_metadata(self) -> None:
        if self.keep_widgets:
            super().set_widgets_metadata()


class GuardedEngine(NBClientEngine):
    """papermill's nbclient engine with :class:`GuardedClient` (papermill's engine extension point)."""

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, log_output: bool = False,
                                 stdout_file: Any = None, stderr_file: Any = None, start_timeout: int = 60,
                                 execution_timeout: float | None = None, **kwargs: Any) -> NotebookNode:
        # the same argument mapping as NBClientEngine.execute_managed_notebook, another client class
        kwargs = remove_args(["input_path"], **kwargs)
        safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
        final_kwargs = merge_kwargs(
            safe_kwargs,
            timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
            startup_timeout=start_timeout,
            kernel_name=kernel_name,
            log=logger,
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
        )
        return GuardedClient(nb_man, **final_kwargs).execute()


def engine_name() -> str:
    """Register the engine with papermill (once per process) and return its name for ``engine_name=``."""
    try:
        papermill_engines.get_engine(ENGINE_NAME)
    except PapermillException:
        papermill_engines.register(ENGINE_NAME, GuardedEngine)
    return ENGINE_NAME
