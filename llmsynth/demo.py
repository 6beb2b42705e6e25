"""`llmsynth demo`: the whole tabular pipeline on the bundled customers table, offline on a CPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from llmsynth.data import TableWriter, read_table, write_table
from llmsynth.data.demo import customers
from llmsynth.evaluate.fidelity import column_shapes, correlation
from llmsynth.evaluate.validity import valid_rows
from llmsynth.synthesizer import TabularSynthesizer
from llmsynth.train.config import load_recipe

HOLDOUT_FRACTION = 0.2


def run_tabular_demo(out_dir: Path, rows: int = 4000, samples: int = 1000, max_minutes: float = 3.0,
                     seed: int = 0, echo: Callable[[str], None] = print) -> dict[str, float]:
    """Write the demo table, split a holdout, train, generate, compare; returns the headline figures."""
    out_dir = Path(out_dir)
    source = customers(rows, seed=seed)
    holdout_rows = np.random.default_rng(seed).random(len(source)) < HOLDOUT_FRACTION
    write_table(source, out_dir / "customers.csv")
    write_table(source[~holdout_rows], out_dir / "train.csv")
    write_table(source[holdout_rows], out_dir / "holdout.csv")
    echo(f"demo table: {len(source)} customers with PII -> {out_dir / 'customers.csv'} "
         f"({(~holdout_rows).sum()} train, {holdout_rows.sum()} holdout)")

    recipe = load_recipe(None)
    recipe.train.max_minutes = max_minutes
    started = time.perf_counter()
    synth = TabularSynthesizer(recipe).fit(out_dir / "train.csv", workdir=out_dir / "model")
    synth.save(out_dir / "model")
    trained = time.perf_counter()
    synthetic_path = out_dir / "synthetic.csv"
    with TableWriter(synthetic_path) as writer:
        for chunk in synth.iter_sample(samples, seed=seed):
            writer.write(chunk)
    generated = time.perf_counter()

    train = read_table(out_dir / "train.csv")
    synthetic = read_table(synthetic_path)
    shapes = column_shapes(train, synthetic, synth.schema)
    figures = {
        "valid_share": float(valid_rows(synthetic, synth.schema).mean()),
        "train_seconds": trained - started,
        "generate_seconds": generated - trained,
        "rows_per_second": samples / (generated - trained),
        "mean_column_shape": float(np.mean(list(shapes.values()))),
        "income_credit_corr_real": correlation(train, "annual_income", "credit_score"),
        "income_credit_corr_synthetic": correlation(synthetic, "annual_income", "credit_score"),
        "fraud_share_real": float(train["is_fraud"].astype(int).mean()),
        "fraud_share_synthetic": float(synthetic["is_fraud"].astype(int).mean()),
    }
    summary = synth.summary
    echo(f"trained the tiny model in {figures['train_seconds']:.0f}s ({summary.epochs:g} epochs, "
         f"{summary.tokens_per_second:.0f} tokens/s, stopped by {summary.stopped_because}) -> {out_dir / 'model'}")
    echo(f"generated {samples} rows in {figures['generate_seconds']:.1f}s "
         f"({figures['rows_per_second']:.0f} rows/s, {figures['valid_share']:.1%} valid) -> {synthetic_path}")
    echo("column shapes (1 = identical distribution; KS complement for numbers/dates, TV complement for categories):")
    for name, score in shapes.items():
        echo(f"  {name:<18} {score:.3f}")
    echo(f"  {'mean':<18} {figures['mean_column_shape']:.3f}")
    echo(f"income-credit score correlation: real {figures['income_credit_corr_real']:.3f}, "
         f"synthetic {figures['income_credit_corr_synthetic']:.3f}")
    echo(f"is_fraud share: real {figures['fraud_share_real']:.2%}, synthetic {figures['fraud_share_synthetic']:.2%}")
    echo("identifier columns (name, email, phone, ssn, address, id) were not learned: they hold Faker surrogates")
    return figures
