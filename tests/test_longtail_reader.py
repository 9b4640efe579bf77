"""Tests of the attribute reader on clean and degraded generator images."""

import numpy as np
import pytest
from PIL import Image, ImageFilter

from minorityprompt.errors import MinorityPromptError
from minorityprompt.longtail.distribution import ATTRIBUTE_NAMES, SceneAttributes
from minorityprompt.longtail.evaluation import score_captions, unnamed_value_frequencies
from minorityprompt.longtail.reader import (
    foreground_mask,
    read_attributes,
    read_scene,
    read_scenes,
)
from minorityprompt.longtail.scenes import (
    SHAPE_PALETTE,
    render_scene,
    sample_scenes,
    sample_scenes_for_caption,
)


def _degrade(image: np.ndarray, rng: np.random.Generator, blur: float, noise: float):
    """Blur with a Gaussian of `blur` pixels, add Gaussian noise of `noise` (0-255 scale),
    and return floats in [0, 1] as a VAE decoder would."""
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(blur)))
    noisy = blurred.astype(np.float64) + rng.normal(0.0, noise, blurred.shape)
    return np.clip(noisy / 255.0, 0.0, 1.0)


def _accuracy_by_attribute(readings, scenes) -> dict[str, float]:
    return {
        name: float(
            np.mean(
                [
                    getattr(reading.attributes, name) == getattr(scene.attributes, name)
                    for reading, scene in zip(readings, scenes, strict=True)
                ]
            )
        )
        for name in ATTRIBUTE_NAMES
    }


def test_reader_exact_on_clean_images():
    scenes = sample_scenes(600, seed=2024)
    readings = read_scenes(np.stack([scene.image for scene in scenes]))
    for reading, scene in zip(readings, scenes, strict=True):
        assert reading.attributes == scene.attributes
        assert reading.shape_iou == pytest.approx(1.0)


def test_reader_accuracy_on_degraded_images():
    rng = np.random.default_rng(5)
    scenes = sample_scenes(1000, seed=99)
    images = np.stack([_degrade(scene.image, rng, blur=0.8, noise=10.0) for scene in scenes])
    accuracy = _accuracy_by_attribute(read_scenes(images), scenes)
    for name, value in accuracy.items():
        assert value >= 0.98, (name, accuracy)


def test_reader_accuracy_on_rare_values():
    # Rare attribute values get their own held-out set, because the joint sampler draws
    # them too seldom for the test above to check them.
    rng = np.random.default_rng(6)
    scenes = sample_scenes_for_caption(
        "a large purple circle at the bottom on a brown background", 50, seed=1
    )
    scenes += sample_scenes_for_caption("a small yellow ring on the right", 100, seed=2)
    scenes += sample_scenes_for_caption("a small orange cross at the top", 100, seed=3)
    images = np.stack([_degrade(scene.image, rng, blur=0.8, noise=10.0) for scene in scenes])
    accuracy = _accuracy_by_attribute(read_scenes(images), scenes)
    for name, value in accuracy.items():
        assert value >= 0.98, (name, accuracy)


def test_reader_accepts_uint8_float_and_pil():
    attributes = SceneAttributes("triangle", "green", "large", "left", "white")
    image = render_scene(attributes, offset=(-1, 1))
    assert read_attributes(image) == attributes
    assert read_attributes(image.astype(np.float32) / 255.0) == attributes
    assert read_scenes([Image.fromarray(image)])[0].attributes == attributes


def test_reader_flags_blank_image():
    blank = np.zeros((32, 32, 3), dtype=np.uint8)
    assert read_scene(blank).shape_iou < 0.5


def test_foreground_mask_counts_shape_pixels():
    attributes = SceneAttributes("square", "orange", "medium", "center", "gray")
    image = render_scene(attributes)
    expected = np.all(image == SHAPE_PALETTE["orange"], axis=-1)
    assert np.array_equal(foreground_mask(image), expected)


@pytest.mark.parametrize(
    "images",
    [np.zeros((2, 32, 32)), np.zeros((1, 3, 32, 32)), np.zeros((1, 32, 32, 3), dtype=np.int64)],
)
def test_reader_rejects_invalid_arrays(images):
    with pytest.raises(MinorityPromptError):
        read_scenes(images)


def test_score_captions_on_reference_samples():
    captions = ["a red circle", "an orange ring on the left", "a small cross"]
    scenes = []
    for index, caption in enumerate(captions):
        scenes += sample_scenes_for_caption(caption, 20, seed=index)
    readings = read_scenes(np.stack([scene.image for scene in scenes]))
    scores = score_captions(readings, [scene.caption for scene in scenes])
    assert scores.text_accuracy == 1.0
    assert scores.named_accuracy == {"shape": 1.0, "color": 1.0, "position": 1.0, "size": 1.0}
    assert scores.sample_count == 60


def test_score_captions_counts_mismatches():
    image = render_scene(SceneAttributes("circle", "red", "medium", "center", "black"))
    readings = read_scenes(np.stack([image, image]))
    scores = score_captions(readings, ["a red circle", "a blue circle"])
    assert scores.text_accuracy == 0.5
    assert scores.named_accuracy == {"shape": 1.0, "color": 0.5}


def test_score_captions_rejects_length_mismatch():
    image = render_scene(SceneAttributes("circle", "red", "medium", "center", "black"))
    with pytest.raises(MinorityPromptError, match="1 readings for 2 captions"):
        score_captions(read_scenes(image[None]), ["a circle", "a circle"])


def test_unnamed_frequencies_match_exact_probabilities():
    caption = "a blue square"
    scenes = sample_scenes_for_caption(caption, 1000, seed=8)
    table = unnamed_value_frequencies(read_scenes(np.stack([s.image for s in scenes])), caption)
    assert set(table) == {"size", "position", "background"}
    for name, values in table.items():
        for value, (frequency, probability) in values.items():
            tolerance = 4 * np.sqrt(probability * (1 - probability) / len(scenes)) + 1e-3
            assert abs(frequency - probability) <= tolerance, (name, value)
