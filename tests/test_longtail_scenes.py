"""Tests of the long-tailed scene generator and its exact probabilities."""

from collections import Counter

import numpy as np
import pytest

from minorityprompt.errors import MinorityPromptError
from minorityprompt.longtail.distribution import (
    ATTRIBUTE_NAMES,
    ATTRIBUTE_VALUES,
    SceneAttributes,
    attribute_marginals,
    caption_text,
    conditional_distribution,
    exact_probability,
    parse_caption,
    training_captions,
    unnamed_attributes,
)
from minorityprompt.longtail.scenes import (
    BACKGROUND_PALETTE,
    IMAGE_SIZE,
    SHAPE_PALETTE,
    render_scene,
    sample_scene,
    sample_scenes,
    sample_scenes_for_caption,
)


def test_training_captions_count_and_round_trip():
    captions = training_captions()
    assert len(captions) == 6 * 7 * 4 * 6 * 5
    assert len(set(captions)) == len(captions)
    for caption in captions:
        assert caption_text(parse_caption(caption)) == caption


def test_caption_examples():
    assert caption_text({"shape": "circle", "color": "red"}) == "a red circle"
    assert caption_text({"shape": "square"}) == "a square"
    named = {"shape": "triangle", "color": "blue", "size": "small", "background": "black"}
    assert caption_text(named) == "a small blue triangle on a black background"
    assert parse_caption("A  Large ring at the bottom ") == {
        "shape": "ring",
        "size": "large",
        "position": "bottom",
    }
    assert parse_caption("") == {}


@pytest.mark.parametrize("caption", ["a red", "a circle red", "two circles", "a pink circle"])
def test_parse_caption_rejects_invalid(caption):
    with pytest.raises(MinorityPromptError):
        parse_caption(caption)


def test_caption_without_shape_rejected():
    with pytest.raises(MinorityPromptError, match="shape"):
        caption_text({"color": "red"})


def test_attribute_values_validated():
    with pytest.raises(MinorityPromptError, match="pink"):
        SceneAttributes("circle", "pink", "small", "center", "black")


def test_conditional_distribution_sums_to_one():
    rng = np.random.default_rng(0)
    captions = list(rng.choice(training_captions(), size=200, replace=False)) + [""]
    for caption in captions:
        distribution = conditional_distribution(caption)
        assert sum(distribution.values()) == pytest.approx(1.0, abs=1e-12)
        named = parse_caption(caption)
        for attributes in distribution:
            for name, value in named.items():
                assert getattr(attributes, name) == value


def test_exact_probability_values():
    red_circle = SceneAttributes("circle", "red", "medium", "center", "black")
    assert exact_probability(red_circle, "a circle") == pytest.approx(0.6 * 0.7 * 0.8 * 0.75)
    assert exact_probability(red_circle, "a red circle") == pytest.approx(0.7 * 0.8 * 0.75)
    purple_circle = SceneAttributes("circle", "purple", "large", "bottom", "brown")
    expected = 0.01 * 0.03 * 0.01 * 0.01
    assert exact_probability(purple_circle, "a circle") == pytest.approx(expected)
    assert exact_probability(red_circle, "a blue circle") == 0.0
    assert exact_probability(red_circle, "a square") == 0.0


def test_empty_caption_is_joint_distribution():
    marginals = attribute_marginals("")
    for shape in ATTRIBUTE_VALUES["shape"]:
        assert marginals["shape"][shape] == pytest.approx(1 / 6)
    # Each color is rank r for exactly one shape, so its marginal is the mean weight.
    for color in ATTRIBUTE_VALUES["color"]:
        assert marginals["color"][color] == pytest.approx(1 / 6)


def test_rarest_values_at_most_one_percent():
    marginals = attribute_marginals("a circle")
    for name in ("color", "position", "background"):
        assert min(marginals[name].values()) <= 0.01 + 1e-12


def test_unnamed_attributes():
    assert unnamed_attributes("a red circle on the left") == ("size", "background")
    assert unnamed_attributes("") == ATTRIBUTE_NAMES


def test_sampler_matches_exact_marginals():
    scenes = sample_scenes(10000, seed=7)
    circles = [scene for scene in scenes if scene.attributes.shape == "circle"]
    colors = Counter(scene.attributes.color for scene in circles)
    expected = attribute_marginals("a circle")["color"]
    for color, probability in expected.items():
        frequency = colors[color] / len(circles)
        tolerance = 4 * np.sqrt(probability * (1 - probability) / len(circles)) + 1e-3
        assert abs(frequency - probability) <= tolerance, color

    all_marginals = attribute_marginals("")
    for name in ("size", "position", "background"):
        counts = Counter(getattr(scene.attributes, name) for scene in scenes)
        for value, probability in all_marginals[name].items():
            frequency = counts[value] / len(scenes)
            tolerance = 4 * np.sqrt(probability * (1 - probability) / len(scenes)) + 1e-3
            assert abs(frequency - probability) <= tolerance, (name, value)


def test_sampled_caption_agrees_with_attributes():
    for scene in sample_scenes(300, seed=3):
        named = parse_caption(scene.caption)
        assert "shape" in named
        assert set(named) == set(scene.named_attributes)
        for name, value in named.items():
            assert getattr(scene.attributes, name) == value


def test_conditional_sampler_matches_exact_probabilities():
    caption = "a square on the left"
    scenes = sample_scenes_for_caption(caption, 5000, seed=11)
    counts = Counter(scene.attributes for scene in scenes)
    distribution = conditional_distribution(caption)
    for attributes in counts:
        assert attributes in distribution
    most_likely = max(distribution, key=distribution.get)
    probability = distribution[most_likely]
    tolerance = 4 * np.sqrt(probability * (1 - probability) / len(scenes))
    assert abs(counts[most_likely] / len(scenes) - probability) <= tolerance


def test_sample_scene_is_seeded():
    first, second = sample_scene(42), sample_scene(42)
    assert first.caption == second.caption
    assert first.attributes == second.attributes
    assert np.array_equal(first.image, second.image)


def test_rendered_image_uses_palette_colors():
    attributes = SceneAttributes("ring", "purple", "large", "right", "gray")
    image = render_scene(attributes, offset=(1, -1))
    assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert image.dtype == np.uint8
    colors = {tuple(int(c) for c in pixel) for pixel in image.reshape(-1, 3)}
    assert colors == {SHAPE_PALETTE["purple"], BACKGROUND_PALETTE["gray"]}
    # The ring's hole shows the background at the shape's center, (22 + 1, 16 - 1).
    assert tuple(image[15, 23]) == BACKGROUND_PALETTE["gray"]


def test_sizes_differ_in_area():
    areas = []
    for size in ATTRIBUTE_VALUES["size"]:
        image = render_scene(SceneAttributes("square", "red", size, "center", "black"))
        areas.append(int((image[..., 0] == SHAPE_PALETTE["red"][0]).sum()))
    assert areas[0] < areas[1] < areas[2]


def test_sample_count_validated():
    with pytest.raises(MinorityPromptError):
        sample_scenes(-1, seed=0)
