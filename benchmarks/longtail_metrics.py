"""Scores of generated scenes against the exact long-tailed distribution of their captions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from minorityprompt.longtail.distribution import (
    attribute_marginals,
    exact_probability,
    parse_caption,
    unnamed_attributes,
)
from minorityprompt.longtail.reader import SceneReading

#: An unnamed attribute value is rare when its probability given the caption is below this.
RARE_THRESHOLD = 0.05


@dataclass(frozen=True)
class LongTailScores:
    """Benchmark numbers of one method over every caption.

    Attributes:
        text_accuracy: Fraction of samples whose read attributes equal every named value.
        mean_nll: Mean of -log P(read attributes | caption) in nats over text-accurate
            samples: how unlikely the unnamed attributes are under the training distribution.
        rare_rate: Fraction of all samples that are text-accurate and show at least one
            unnamed attribute value of probability below `RARE_THRESHOLD` given the caption.
        coverage: Mean over captions of the fraction of the caption's possible unnamed
            attribute combinations that appear among its text-accurate samples, relative to
            the most that its sample count could show.
        samples: Number of samples.
    """

    text_accuracy: float
    mean_nll: float
    rare_rate: float
    coverage: float
    samples: int

    def to_dict(self) -> dict:
        return asdict(self)


def _is_rare(reading: SceneReading, caption: str) -> bool:
    marginals = attribute_marginals(caption)
    return any(
        marginals[name][getattr(reading.attributes, name)] < RARE_THRESHOLD
        for name in unnamed_attributes(caption)
    )


def score_longtail(readings: Sequence[SceneReading], captions: Sequence[str]) -> LongTailScores:
    """Score readings of generated images, one caption per reading."""
    accurate, rare, nll = 0, 0, []
    combinations: dict[str, set] = {}
    counts: dict[str, int] = {}
    for reading, caption in zip(readings, captions, strict=True):
        counts[caption] = counts.get(caption, 0) + 1
        named = parse_caption(caption)
        values = reading.attributes.as_dict()
        if any(values[name] != value for name, value in named.items()):
            continue
        accurate += 1
        nll.append(-math.log(exact_probability(reading.attributes, caption)))
        rare += _is_rare(reading, caption)
        unnamed = tuple(values[name] for name in unnamed_attributes(caption))
        combinations.setdefault(caption, set()).add(unnamed)

    coverage = []
    for caption, count in counts.items():
        marginals = attribute_marginals(caption)
        possible = math.prod(
            sum(probability > 0 for probability in marginals[name].values())
            for name in unnamed_attributes(caption)
        )
        coverage.append(len(combinations.get(caption, ())) / min(possible, count))
    total = len(readings)
    return LongTailScores(
        text_accuracy=accurate / total,
        mean_nll=sum(nll) / len(nll) if nll else float("nan"),
        rare_rate=rare / total,
        coverage=sum(coverage) / len(coverage),
        samples=total,
    )
