"""The `deeplab` command: thin sub-commands over the library."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deeplab")
def main() -> None:
    """DeepLab semantic segmentation: predict, train, evaluate, CRF, export."""
