"""Evaluation metrics: likelihood, feature-space metrics, text-image scores and diversity.

`METRIC_DIRECTIONS` records for each metric whether higher or lower is better.
"""

from .clip_score import ClipScoreResult, clip_score
from .features import (
    ImageFeatureExtractor,
    clip_text_embeddings,
    load_clip,
    load_dino,
    load_feature_extractor,
)
from .images import to_uint8_images
from .likelihood import (
    LikelihoodResult,
    bits_per_dim,
    dequantization_offset_bits,
    ode_log_likelihood,
    uniform_dequantize,
)
from .prdc import PRDCResult, compute_prdc
from .probability_flow import ContinuousVPSchedule
from .rarity import RarityResult, rarity_score
from .registry import METRIC_DIRECTIONS, metric_direction
from .reward_models import (
    image_reward_score,
    load_image_reward,
    load_pickscore,
    pick_score,
)
from .similarity import (
    InBatchSimilarityResult,
    in_batch_similarity,
    in_batch_similarity_of_images,
    mean_pairwise_cosine,
)

__all__ = [
    "METRIC_DIRECTIONS",
    "ClipScoreResult",
    "ContinuousVPSchedule",
    "ImageFeatureExtractor",
    "InBatchSimilarityResult",
    "LikelihoodResult",
    "PRDCResult",
    "RarityResult",
    "bits_per_dim",
    "clip_score",
    "clip_text_embeddings",
    "compute_prdc",
    "dequantization_offset_bits",
    "image_reward_score",
    "in_batch_similarity",
    "in_batch_similarity_of_images",
    "load_clip",
    "load_dino",
    "load_feature_extractor",
    "load_image_reward",
    "load_pickscore",
    "mean_pairwise_cosine",
    "metric_direction",
    "ode_log_likelihood",
    "pick_score",
    "rarity_score",
    "to_uint8_images",
    "uniform_dequantize",
]
