import torch

from minorityprompt.metrics import rarity_score

generator = torch.Generator().manual_seed(0)
real = torch.randn(500, 8, generator=generator)
typical = torch.randn(50, 8, generator=generator) * 0.5
unusual = torch.randn(50, 8, generator=generator) * 1.5

for label, fake in (("typical", typical), ("unusual", unusual)):
    result = rarity_score(real, fake, nearest_k=3)
    print(f"{label}: mean rarity {result.mean:.3f}, "
          f"{result.fraction_in_manifold:.0%} inside the real manifold")
