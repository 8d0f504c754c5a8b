"""`python -m deeplab ...` (and `torchrun -m deeplab train ...` for distributed training)."""

from deeplab.cli import main

main()
