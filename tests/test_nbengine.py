"""The runner's papermill engine against the installed nbclient, without a kernel.

``GuardedClient`` notices an exception swallowed by an ``ipywidgets.Output`` context through
nbclient's public hooks (``register_output_hook``/``remove_output_hook``, ``output``,
``on_cell_executed``). papermill and nbclient are not pinned, so these tests replay the kernel's
messages through nbclient's own Output-widget emulation: a release that changes the hooks fails
here with a message saying what changed. ``test_runner.py`` proves the same end to end with a
real kernel (``raises_in_output``).
"""

from __future__ import annotations

import asyncio
import inspect
from types import SimpleNamespace
from typing import Any

import nbclient
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbclient.util import run_hook
from nbformat.v4 import new_code_cell, new_notebook
from papermill.engines import NBClientEngine, papermill_engines

from optnb.experiments import nbengine
from optnb.experiments.nbengine import GuardedClient

CHANGED = (f"nbclient {nbclient.__version__} changed a hook optnb/experiments/nbengine.py relies on to "
           "fail runs whose exception an ipywidgets.Output swallowed (ipywidgets#3208)")
EXEC_ID = "execute-request-1"  # the msg_id of the cell's execute_request


def _params(func: Any) -> list[str]:
    return [p for p in inspect.signature(func).parameters if p != "self"]


def test_the_nbclient_hooks_the_engine_uses_still_exist():
    assert "on_cell_executed" in NotebookClient.class_trait_names(), CHANGED + ": on_cell_executed is gone"
    assert _params(NotebookClient.register_output_hook) == ["msg_id", "hook"], CHANGED + ": register_output_hook"
    assert _params(NotebookClient.remove_output_hook) == ["msg_id", "hook"], CHANGED + ": remove_output_hook"
    assert _params(NotebookClient.output) == ["outs", "msg", "display_id", "cell_index"], CHANGED + ": output"
    assert _params(NotebookClient.reset_execution_trackers) == [], CHANGED + ": reset_execution_trackers"
    assert _params(NotebookClient.set_widgets_metadata) == [], CHANGED + ": set_widgets_metadata"
    assert {"allow_errors", "allow_error_names", "force_raise_errors", "store_widget_state"} <= set(
        NotebookClient.class_trait_names()), CHANGED + ": the error/widget options"
    assert callable(CellExecutionError.from_cell_and_msg), CHANGED + ": CellExecutionError.from_cell_and_msg"
    engine_args = _params(NBClientEngine.execute_managed_notebook)
    assert engine_args[:2] == ["nb_man", "kernel_name"] and "execution_timeout" in engine_args, (
        "papermill changed NBClientEngine.execute_managed_notebook, which GuardedEngine mirrors")


def test_the_engine_registers_once_under_its_name():
    assert nbengine.engine_name() == nbengine.engine_name() == "optnb"
    assert papermill_engines.get_engine("optnb") is nbengine.GuardedEngine


# ------------------------------------------------------------------------------------------------
# The kernel's messages for `out = Output(); display(out); with out: raise ...`, replayed


def _client(**options: Any) -> tuple[GuardedClient, Any]:
    nb = new_notebook(cells=[new_code_cell("with out:\n    raise RuntimeError('inside')")])
    nb_man = SimpleNamespace(nb=nb, autosave_cell=lambda: None)
    client = GuardedClient(nb_man, kernel_name="python3", store_widget_state=True, **options)
    # what the emulated widget sends its state through; no kernel receives it here
    client.kc = SimpleNamespace(session=SimpleNamespace(msg=lambda *a, **k: {}),
                                shell_channel=SimpleNamespace(send=lambda msg: None))
    client.clear_before_next_output = False  # as nbclient sets it when a cell starts
    return client, nb.cells[0]


def _msg(msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"msg_type": msg_type, "parent_header": {"msg_id": EXEC_ID}, "header": {"msg_type": msg_type},
            "metadata": {}, "content": content, "buffers": []}


def _widget_capture(client: GuardedClient, cell: Any, capturing: bool) -> None:
    """The kernel's Output widget sets (or clears) ``msg_id`` when its context is entered (or left)."""
    state = {"msg_id": EXEC_ID if capturing else ""}
    client.process_message(_msg("comm_msg", {"comm_id": "out-1", "data": {"method": "update", "state": state,
                                                                           "buffer_paths": []}}), cell, 0)


def _replay(client: GuardedClient, cell: Any, raise_inside: bool = True) -> None:
    state = {"_model_module": "@jupyter-widgets/output", "_model_module_version": "1.0.0",
             "_model_name": "OutputModel", "msg_id": "", "outputs": []}
    client.process_message(_msg("comm_open", {"comm_id": "out-1", "target_name": "jupyter.widget",
                                              "data": {"state": state, "buffer_paths": []}}), cell, 0)
    if raise_inside:
        _widget_capture(client, cell, capturing=True)
    client.process_message(_msg("error", {"ename": "RuntimeError", "evalue": "inside",
                                          "traceback": ["RuntimeError: inside"]}), cell, 0)
    if raise_inside:
        _widget_capture(client, cell, capturing=False)


def _executed(client: GuardedClient, cell: Any, status: str = "ok") -> None:
    asyncio.run(run_hook(client.on_cell_executed, cell=cell, cell_index=0,
                         execute_reply={"content": {"status": status}}))


def test_an_error_swallowed_by_an_output_widget_fails_its_cell():
    client, cell = _client()
    _replay(client, cell)
    widget_outputs = client.widget_state["out-1"].get("outputs", [])
    assert [o["output_type"] for o in widget_outputs] == ["error"], CHANGED + ": the widget emulation moved"
    assert [o["output_type"] for o in cell.outputs] == ["error"], CHANGED + ": output() no longer sees it"
    with pytest.raises(CellExecutionError, match="RuntimeError: inside") as info:
        _executed(client, cell)
    assert info.value.ename == "RuntimeError"


def test_an_allowed_error_inside_a_widget_does_not_fail_the_cell():
    client, cell = _client()
    cell.metadata["tags"] = ["raises-exception"]
    _replay(client, cell)
    _executed(client, cell)  # no exception
    client, cell = _client(allow_errors=True)
    _replay(client, cell)
    _executed(client, cell)


def test_an_error_outside_any_widget_is_left_to_nbclient():
    client, cell = _client()
    _replay(client, cell, raise_inside=False)  # the cell's own error: nbclient raises for it
    assert [o["output_type"] for o in cell.outputs] == ["error"]
    _executed(client, cell, status="error")  # the guard adds nothing
    _executed(client, cell, status="ok")  # and remembered nothing


def test_widget_state_is_written_only_when_asked():
    for keep in (False, True):
        client, cell = _client(keep_widgets=keep)
        _replay(client, cell)
        client.set_widgets_metadata()
        assert ("widgets" in client.nb.metadata) is keep
