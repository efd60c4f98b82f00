"""The CLI's log handler outlives the stderr it was set up with (issue 11: the intermittent
``--- Logging error ---`` of test_pipeline_cli on a loaded machine)."""

from __future__ import annotations

import io
import logging
import sys
import threading

from stockml import cli_common
from stockml.settings import Settings


def test_a_record_after_the_callers_stderr_closed_is_no_logging_error(capsys, monkeypatch):
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers = []  # as in a fresh process: basicConfig installs the CLI's handler
    try:
        borrowed = io.TextIOWrapper(io.BytesIO())  # what CliRunner puts in sys.stderr during invoke
        monkeypatch.setattr(sys, "stderr", borrowed)
        cli_common.configure_logging(Settings())
        monkeypatch.undo()
        borrowed.close()  # the invoke is over: its stream is gone
        # a late record from a background thread (MLflow's, the joblib pool's) after the command returned
        t = threading.Thread(target=lambda: logging.getLogger("stockml.late").warning("after the command"))
        t.start()
        t.join()
        err = capsys.readouterr().err
        assert "Logging error" not in err
        assert "after the command" in err  # it went to the stderr of the moment instead
    finally:
        root.handlers, root.level = saved, level
