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
