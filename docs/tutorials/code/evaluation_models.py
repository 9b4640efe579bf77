"""Save tiny random CLIP and DINO models in place of the real metric models."""

from minorityprompt.testing_metrics import save_tiny_clip, save_tiny_dino

save_tiny_clip("tiny-clip")
save_tiny_dino("tiny-dino")
print("saved tiny-clip and tiny-dino")
