"""`python -m deeplab ...` (and `torchrun -m deeplab train ...` for distributed training)."""

from deeplab.apps.cli import main

main()
