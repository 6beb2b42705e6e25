"""Valid rows per second: llmsynth vs GReaT (be-great from PyPI), same tiny architecture, data and machine.

Run with `make bench` (its own environment). Both models get the same Llama-style tiny config from random
init, a BPE tokenizer trained on their own text format, and the same number of epochs on the demo
customers table (identifier columns removed, as llmsynth never learns them). Sampling is timed side by
side in one run, repeated; medians are reported. Rows of both are checked by the same codecs
(`llmsynth.evaluate.validity`): all columns present, categories seen in training, numbers in the training
range at the column's precision, dates in range. Writes docs/benchmarks.md (section) and eval/results/bench_sampling.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from llmsynth import TabularSynthesizer  # noqa: E402
from llmsynth.data.demo import customers  # noqa: E402
from llmsynth.data.schema import infer_schema  # noqa: E402
from llmsynth.model import TinyModelConfig, tiny_model, train_tokenizer  # noqa: E402
from llmsynth.evaluate.validity import valid_rows  # noqa: E402
from llmsynth.train.config import Recipe, TrainConfig, load_recipe  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, versions, write_section  # noqa: E402



def great_base(table: pd.DataFrame, config: TinyModelConfig, folder: Path) -> str:
    """A local 'pretrained' checkpoint for GReaT: our tiny config, random init, tokenizer on GReaT's text."""
    texts = [", ".join(f"{c} is {v}" for c, v in zip(table.columns, row)) for row in table.astype(str).values]
    tokenizer = train_tokenizer(texts, config.vocab_size)
    torch.manual_seed(0)
    tiny_model(config, tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000, help="Demo table size.")
    parser.add_argument("--epochs", type=int, default=6, help="Training epochs for both models.")
    parser.add_argument("--samples", type=int, default=1000, help="Rows llmsynth draws per repeat.")
    parser.add_argument("--great-samples", type=int, default=256, help="Rows GReaT draws per repeat: one batch "
                        "(about 5-7 rows/s on 2 cores, so 1,000 rows three times took 10 of `make bench`'s minutes).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed sampling repeats (median reported).")
    parser.add_argument("--batch", type=int, default=256, help="Sampling batch for both (GReaT's k).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)

    source = customers(args.rows, seed=0)
    schema = infer_schema(source)
    table = source[[c.name for c in schema.learned]]
    config = load_recipe("tiny-cpu").tiny

    started = time.perf_counter()
    ours = TabularSynthesizer(Recipe(tiny=config, train=TrainConfig(epochs=args.epochs, patience=args.epochs)))
    ours.fit(table)
    ours_fit = time.perf_counter() - started

    from be_great import GReaT

    with tempfile.TemporaryDirectory() as scratch:
        base = great_base(table, config, Path(scratch) / "base")
        great = GReaT(llm=base, experiment_dir=str(Path(scratch) / "great"), epochs=args.epochs, batch_size=64,
                      save_strategy="no", learning_rate=2e-3)
        started = time.perf_counter()
        great.fit(table)
        great_fit = time.perf_counter() - started

        results = {"ours": [], "great": [], "great_accepted": [], "great_strictly_valid_share": [], "ours_valid_share": []}
        longest = max(len(great.tokenizer(t)["input_ids"]) for t in
                      [", ".join(f"{c} is {v}" for c, v in zip(table.columns, row)) for row in table.astype(str).values[:500]])
        for repeat in range(args.repeats):
            started = time.perf_counter()
            rows = ours.sample(args.samples, seed=repeat, batch_size=args.batch)
            seconds = time.perf_counter() - started
            results["ours_valid_share"].append(float(valid_rows(rows, ours.schema).mean()))
            results["ours"].append(len(rows) * results["ours_valid_share"][-1] / seconds)

            torch.manual_seed(repeat)
            started = time.perf_counter()
            generated = great.sample(args.great_samples, k=args.batch, max_length=longest + 8, device="cpu")
            seconds = time.perf_counter() - started
            valid_share = float(valid_rows(generated, ours.schema).mean())
            results["great_accepted"].append(len(generated) / seconds)
            results["great_strictly_valid_share"].append(valid_share)
            results["great"].append(len(generated) * valid_share / seconds)

    medians = {k: statistics.median(v) for k, v in results.items()}
    figures = {
        "machine": machine(),
        "versions": versions("llmsynth", "be-great", "torch", "transformers"),
        "setting": vars(args),
        "fit_seconds": {"ours": ours_fit, "great": great_fit},
        "validation_loss_ours": ours.summary.best_validation_loss,
        "raw": results,
        "median": medians,
        "speedup_valid_rows_per_second": medians["ours"] / medians["great"],
    }
    print(json.dumps(figures, indent=2))
    write_markdown(figures)


def write_markdown(figures: dict) -> None:
    m, setting = figures["median"], figures["setting"]
    body = f"""Machine: {figures['machine']}. Versions: {', '.join(f'{k} {v}' for k, v in figures['versions'].items())}.
Setting: demo customers table, {setting['rows']} rows, learned columns only; both models the same Llama-style tiny
config (random init), {setting['epochs']} epochs each; {setting['samples']} rows per draw for llmsynth and
{setting['great_samples']} for GReaT, batch {setting['batch']},
median of {setting['repeats']} draws, side by side in one run. A row is valid when every column is present with a
category seen in training, or a number at the column's precision or a date inside the training range.

| | llmsynth | GReaT |
|---|---|---|
| fit time (s) | {figures['fit_seconds']['ours']:.0f} | {figures['fit_seconds']['great']:.0f} |
| valid rows / s (median) | {m['ours']:.1f} | {m['great']:.1f} |
| valid rows / s per draw | {' / '.join(f'{v:.0f}' for v in figures['raw']['ours'])} | {' / '.join(f'{v:.0f}' for v in figures['raw']['great'])} |
| share of returned rows strictly valid | {m['ours_valid_share']:.1%} | {m['great_strictly_valid_share']:.1%} |
| rows / s GReaT itself accepts | | {m['great_accepted']:.1f} |

**Speed-up in valid rows per second: {figures['speedup_valid_rows_per_second']:.1f}x.**
Reproduce: `make bench` (or `python eval/bench_sampling.py --rows {setting['rows']} --epochs {setting['epochs']}`
in the bench environment).
"""
    write_section("Sampling speed: llmsynth vs GReaT (`eval/bench_sampling.py`)", body, figures, "bench_sampling")


if __name__ == "__main__":
    main()
