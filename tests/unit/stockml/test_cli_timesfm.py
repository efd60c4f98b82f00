"""The application layer and TimesFM: `stockml status` says plainly whether it can run here, and the
pipeline leaves it out when it cannot (its checkpoint is never downloaded)."""

from typer.testing import CliRunner

from stockml.cli import app
from training.forecasting import foundation


def test_status_says_when_no_timesfm_checkpoint_is_configured(tmp_path, monkeypatch):
    monkeypatch.setenv("STOCKML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STOCKML_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr(foundation, "_WHERE", foundation._Where(None, tmp_path / "hf-cache"))  # empty HF cache
    monkeypatch.delenv("STOCKML_TIMESFM_CHECKPOINT", raising=False)
    result = CliRunner().invoke(app, ["status"])
    assert "TimesFM: no checkpoint configured (set STOCKML_TIMESFM_CHECKPOINT)" in result.output, result.output
    (tmp_path / "model.safetensors").write_bytes(b"")
    monkeypatch.setenv("STOCKML_TIMESFM_CHECKPOINT", str(tmp_path / "model.safetensors"))
    result = CliRunner().invoke(app, ["status"])
    text = "".join(result.output.split())  # rich wraps long lines, even inside a path
    expected = f"TimesFM: checkpoint {tmp_path / 'model.safetensors'} (from STOCKML_TIMESFM_CHECKPOINT)"
    assert "".join(expected.split()) in text, result.output


def test_the_pipeline_zoo_leaves_timesfm_out_without_a_checkpoint(tmp_path, monkeypatch, caplog):
    import logging

    from stockml.settings import Settings
    from stockml.steps.backtest import make_zoo

    monkeypatch.setattr(foundation, "_WHERE", foundation._Where(None, tmp_path / "hf-cache"))
    with caplog.at_level(logging.WARNING, logger="stockml.forecasting"):
        zoo = make_zoo(Settings(home=tmp_path, methods=["Naive", "TimesFM"]))
    assert zoo.methods == ["Naive"]
    assert "method TimesFM left out: no checkpoint configured (set STOCKML_TIMESFM_CHECKPOINT)" in caplog.text
