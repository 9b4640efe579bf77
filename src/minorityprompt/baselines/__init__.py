"""Baseline samplers for comparison: null prompt, CADS and SGMS, run through `generate`."""

from .cads import CADS, CADS_PRESETS, anneal_condition, cads_gamma, rescale_to_reference
from .null_prompt import DEFAULT_NULL_PROMPT, null_prompt_kwargs
from .sgms import SGMS, SGMSStepRecord

__all__ = [
    "CADS",
    "CADS_PRESETS",
    "DEFAULT_NULL_PROMPT",
    "SGMS",
    "SGMSStepRecord",
    "anneal_condition",
    "cads_gamma",
    "null_prompt_kwargs",
    "rescale_to_reference",
]
