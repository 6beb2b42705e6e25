"""`python -m llmsynth`, which `accelerate launch -m llmsynth train ...` runs in every process."""

from llmsynth.cli import main

main()
