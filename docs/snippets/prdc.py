import torch

from minorityprompt.metrics import compute_prdc

generator = torch.Generator().manual_seed(0)
real = torch.randn(200, 16, generator=generator)
close = torch.randn(100, 16, generator=generator)
shifted = torch.randn(100, 16, generator=generator) + 1.5

print("same distribution:", compute_prdc(real, close, nearest_k=5).as_dict())
print("shifted:          ", compute_prdc(real, shifted, nearest_k=5).as_dict())
