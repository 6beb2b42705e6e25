"""The versions of what made a model or a figure: written into manifests and release records."""

from __future__ import annotations

LIBRARIES = ("llmsynth", "torch", "transformers", "tokenizers", "peft", "accelerate")


def library_versions(packages: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Installed versions of `packages` (those not installed left out): what a manifest or a release record pins."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found
