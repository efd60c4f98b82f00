"""A randomly initialised TimesFM 2.5 checkpoint, for tests: the real weights are not shipped and the
Hugging Face hub cannot be reached here.

Same classes as the release (``timesfm``'s 2.5 torch module and wrapper), same on-disk format (the
wrapper's ``save_pretrained``: ``model.safetensors`` plus ``config.json``), a reduced size: 2 layers of
64 dims and 4 heads instead of 20 × 1280 × 16 (1.6 M parameters instead of 231 M; the 200M one takes
about 5 s to build and 0.9 GB on disk, too much for unit tests on 2 cores). Patch lengths, quantiles
and output heads keep the release's sizes, so the decoding path is the one the 200M model runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


def tiny_definition():
    from timesfm import configs
    from timesfm.timesfm_2p5.timesfm_2p5_base import TimesFM_2p5_200M_Definition

    d = TimesFM_2p5_200M_Definition()
    xf = dataclasses.replace(d.stacked_transformers.transformer, model_dims=64, hidden_dims=96, num_heads=4)
    return dataclasses.replace(
        d,
        tokenizer=dataclasses.replace(d.tokenizer, hidden_dims=48, output_dims=64),
        stacked_transformers=configs.StackedTransformersConfig(num_layers=2, transformer=xf),
        output_projection_point=dataclasses.replace(d.output_projection_point, input_dims=64, hidden_dims=64),
        output_projection_quantiles=dataclasses.replace(d.output_projection_quantiles, input_dims=64, hidden_dims=64),
    )


def write_tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    """Save a seeded random tiny TimesFM 2.5 under ``folder`` as the release is laid out; returns ``folder``."""
    import torch

    from training.forecasting.foundation import model_class

    torch.manual_seed(seed)
    wrapper = model_class(tiny_definition())(torch_compile=False)
    wrapper.save_pretrained(str(folder))
    return folder


def router_with_timesfm(checkpoint: Path, skus: int = 24, weeks: int = 80, seed: int = 3):
    """(RouterModel, RouterTraining, demand): a router trained on a backtest of Naive, SES and TimesFM (the
    tiny checkpoint at ``checkpoint``) with its members fitted on the catalogue, as the pipeline registers it.
    The checkpoint is configured only while training; the caller configures what it tests."""
    from training.data.demo import generate_catalogue
    from training.data.weekly import to_weekly_demand
    from training.forecasting import foundation
    from training.forecasting.backtest import backtest
    from training.forecasting.zoo import ModelZoo
    from training.router.predict import RouterModel, fit_members
    from training.router.train import train_router

    before = foundation._WHERE.checkpoint
    foundation.configure(checkpoint)
    try:
        demand = to_weekly_demand(generate_catalogue(skus, weeks, seed=seed, dirty_rows=False).movements)
        bt = backtest(demand, ModelZoo(["Naive", "SES", "TimesFM"], n_jobs=1), h=6, n_windows=3)
        t = train_router(demand, bt, season_length=52)
        zoo = fit_members(demand, t.router.methods_, 52, t.horizon)
        return RouterModel.from_training(t, {}, {}, zoo), t, demand
    finally:
        foundation.configure(before)


def register_timesfm_router(tmp: Path, experiment: str, name: str | None = None):
    """Write the tiny checkpoint under ``tmp``, train :func:`router_with_timesfm` and register it as the
    champion of a fresh SQLite registry under ``tmp``. Returns (checkpoint, registry URI, demand).

    The checkpoint is configured while the router is trained and registered (logging the model forecasts
    an input example, which may be routed to TimesFM), then put back as it was; MLflow's URIs too.
    """
    import mlflow
    from mlflow import MlflowClient

    from training.forecasting import foundation
    from training.registry import mlflow_registry as reg

    checkpoint = write_tiny_checkpoint(tmp / "timesfm-2.5")
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri(), foundation._WHERE
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    foundation._WHERE = foundation._Where(checkpoint, tmp / "hf-cache")
    try:
        model, t, demand = router_with_timesfm(checkpoint)
        skus = list(t.holdout_forecasts["unique_id"].unique())[:5]
        holdout = reg.split_holdout(demand, t.holdout_cutoff, t.horizon, skus)
        reg.configure(uri, experiment, tmp / "artifacts")
        v = reg.log_router(model, params={}, metrics={}, tags={}, holdout=holdout, name=name or reg.MODEL_NAME)
        MlflowClient().set_registered_model_alias(name or reg.MODEL_NAME, reg.CHAMPION, v.version)
    finally:
        foundation._WHERE = previous[2]
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    return checkpoint, uri, demand
