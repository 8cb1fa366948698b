"""Deprecated: the campaign moved to concept modules; this name goes in the next release.

``toolkit.latency.campaign`` (the run, its log, the conversion pool), ``.artifacts`` (the
.tflite cache), ``.kernel_modules`` (a kernel as a PyTorch module), ``.overhead`` (the
overhead law), ``.report`` (the plots). Import from those.
"""

from __future__ import annotations

import warnings

from .artifacts import cache_dir, kernel_path, kernel_tflite, subnet_path, subnet_tflite
from .campaign import (
    CAMPAIGN_FILES,
    CONVENTION,
    SPREADS,
    Build,
    CampaignConfig,
    append_jsonl,
    build_all,
    campaign_subnets,
    default_workers,
    finish,
    kernel_codes_of,
    read_jsonl,
    run_campaign,
)
from .kernel_modules import FirstConv, kernel_module
from .overhead import MIN_SUBNETS, OVERHEAD_FORMS, PREFER_WEIGHTS, choose_overhead
from .report import report

warnings.warn("toolkit.latency.profiler is deprecated; import from toolkit.latency.campaign, "
              ".artifacts, .kernel_modules, .overhead or .report", DeprecationWarning,
              stacklevel=2)

__all__ = ["cache_dir", "kernel_path", "kernel_tflite", "subnet_path", "subnet_tflite",
           "CAMPAIGN_FILES", "CONVENTION", "SPREADS", "Build", "CampaignConfig", "append_jsonl",
           "build_all", "campaign_subnets", "default_workers", "finish", "kernel_codes_of",
           "read_jsonl", "run_campaign", "FirstConv", "kernel_module", "MIN_SUBNETS",
           "OVERHEAD_FORMS", "PREFER_WEIGHTS", "choose_overhead", "report"]
