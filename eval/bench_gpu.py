"""GPU figures: training tokens/s and MFU of a SmolLM2-135M-shaped model, and generation rows/s.

The model is the SmolLM2-135M architecture with random weights (throughput does not depend on them; nothing is
downloaded). Training runs llmsynth's own step (`training_step`: Accelerate bf16 autocast, fused AdamW, gradient
clipping) on llmsynth's own batches (`pad_batch` or `pack_batch`) of demo-table rows and demo support chats, for full
fine-tuning and LoRA (r=16, all linear layers), packing off and on, eager and torch.compile'd. Generation: llmsynth's
constrained row sampler, and plain HF generate with a dynamic cache and with a static cache + torch.compile.

MFU counts model FLOPs per real (non-padding) token: 6 x matmul parameters for full fine-tuning, 4 x for LoRA (frozen
weights get no weight gradient), plus causal attention 6 x layers x width x n(n+1) per record of n tokens, against
the GPU's dense bf16 peak (989 TFLOP/s for H100 SXM and H200).

    python eval/bench_gpu.py            # on a GPU machine; writes docs/benchmarks.md and eval/results/bench_gpu.json
    python eval/bench_gpu.py --smoke    # a tiny shape on the CPU: checks the script, writes nothing
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from transformers import LlamaConfig, LlamaForCausalLM

from llmsynth.data.demo import customers, support_chats
from llmsynth.model import LoraSettings, train_tokenizer, with_lora
from llmsynth.serialize.tabular import IGNORE, row_text
from llmsynth.train.config import TrainConfig
from llmsynth.train.batches import pack_batch, pad_batch
from llmsynth.train.loop import make_optimizer, training_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, versions, write_section  # noqa: E402

SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                    rope_theta=100000.0, tie_word_embeddings=True)
SMOKE = dict(vocab_size=8192, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=1, max_position_embeddings=2048, tie_word_embeddings=True)
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "L4": 121e12}


def records(kind: str, count: int, tokenizer) -> list[tuple[list[int], list[int]]]:
    """Demo rows or demo conversations as token ids with next-token labels (the first one ignored, as ours are)."""
    if kind == "rows":
        table = customers(count, seed=0).astype(str)
        texts = [row_text(list(table.columns), list(row)) for row in table.itertuples(index=False)]
    else:
        texts = [" ".join(f"<{m['role']}> {m['content']}" for m in c["messages"])
                 for c in support_chats(count, seed=0).conversations]
    encoded = []
    for text in texts:
        ids = [tokenizer.bos_token_id] + tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
        encoded.append((ids, [IGNORE] + ids[1:]))
    return encoded


def model_flops(model, config: LlamaConfig, lengths: list[int], lora: bool) -> float:
    """Model FLOPs of one training pass over records of these lengths."""
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    attention = 6 * config.num_hidden_layers * config.hidden_size * sum(n * (n + 1) for n in lengths)
    return (4 if lora else 6) * matmul * sum(lengths) + attention


def train_figures(config: LlamaConfig, examples, batch_records: int, pack_length: int, packing: bool, lora: bool,
                  compiled: bool, steps: int, warmup: int, peak: float | None) -> dict:
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    if lora:
        model = with_lora(model, LoraSettings(r=16, lora_alpha=32, lora_dropout=0.0))
    accelerator, bf16 = Accelerator(), torch.cuda.is_available()  # bf16 autocast as training does it
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(trainable, TrainConfig(), accelerator)
    batches = [examples[(i * batch_records) % len(examples):][:batch_records] for i in range(warmup + steps)]
    flops = model_flops(model, config, [len(ids) for chunk in batches[warmup:] for ids, _ in chunk], lora)
    model, optimizer = accelerator.prepare(model, optimizer)
    if compiled:
        model = torch.compile(model, dynamic=True)
    model.train()
    tokens, seconds = 0, []
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for step, chunk in enumerate(batches):
        batch = pack_batch(chunk, 0, pack_length) if packing else pad_batch(chunk, 0)
        real = batch.pop("tokens")
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        if step == warmup:
            accelerator.wait_for_everyone()
            _sync()
            started = time.perf_counter()
        training_step(model, batch, optimizer, accelerator, trainable, 1.0, bf16=bf16)
        if step >= warmup:
            tokens += real
            _sync()
            seconds.append(time.perf_counter())
    elapsed = seconds[-1] - started
    step_times = [b - a for a, b in zip([started] + seconds[:-1], seconds)]
    return {"tokens_per_second": tokens / elapsed, "median_step_seconds": statistics.median(step_times),
            "mfu": flops / elapsed / peak if peak else None,
            "tokens_per_step": tokens / steps,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def generation_figures(config: LlamaConfig, rows: int, new_tokens: int, smoke: bool) -> dict:
    """Rows/s of the constrained row sampler on the demo table, and of plain HF generate with row-length outputs."""
    from llmsynth import TabularSynthesizer
    from llmsynth.train.config import Recipe

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    synth = TabularSynthesizer(Recipe(train=TrainConfig(epochs=1))).fit(customers(400, seed=0), scrub=False,
                                                                        progress=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**{**config.to_dict(), "vocab_size": len(synth.tokenizer)})).to(device, dtype)
    synth.model, synth._sampler = model.eval(), None
    figures = {}
    try:
        synth.sample(min(rows, 64), batch_size=rows)  # warm-up
        _sync()
        started = time.perf_counter()
        table = synth.sample(rows, batch_size=rows, seed=1)
        _sync()
        figures["constrained_rows_per_second"] = len(table) / (time.perf_counter() - started)
    except Exception as exc:
        figures["constrained_rows_per_second"] = math.nan
        print(f"constrained sampler failed: {type(exc).__name__}: {exc}", flush=True)
    prompt = torch.full((rows, 1), synth.tokenizer.bos_token_id, device=device)
    for name, options in (("hf_generate_dynamic_cache", {}),
                          ("hf_generate_static_cache_compiled", {"cache_implementation": "static"})):
        if smoke and options:
            continue  # compiling is for the GPU run
        run = lambda: model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True,  # noqa: E731
                                     max_new_tokens=new_tokens, min_new_tokens=new_tokens, **options)
        try:
            run()
            run()  # a second warm-up: compilation settles on the static shapes
            _sync()
            started = time.perf_counter()
            run()
            _sync()
            figures[f"{name}_rows_per_second"] = rows / (time.perf_counter() - started)
        except Exception as exc:
            figures[f"{name}_rows_per_second"] = math.nan
            print(f"{name} failed: {type(exc).__name__}: {exc}", flush=True)
    figures["new_tokens_per_row"] = new_tokens
    figures["rows_per_batch"] = rows
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per setting")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tokens-per-step", type=int, default=16384, help="real tokens per step, about")
    parser.add_argument("--pack-length", type=int, default=4096)
    parser.add_argument("--generate-rows", type=int, default=512)
    parser.add_argument("--smoke", action="store_true", help="tiny shape, few steps, CPU is fine; writes nothing")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of this GPU, when it is not in our table")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.warmup, args.tokens_per_step, args.generate_rows = 2, 1, 2048, 16
    config = LlamaConfig(**(SMOKE if args.smoke else SMOLLM2_135M))
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
    peak = args.peak_tflops * 1e12 if args.peak_tflops else next(
        (v for k, v in PEAK_BF16.items() if k in gpu), None)
    sample_rows = customers(2000, seed=0).astype(str)
    sample_chats = support_chats(300, seed=0).conversations
    corpus = [row_text(list(sample_rows.columns), list(r)) for r in sample_rows.itertuples(index=False)]
    corpus += [m["content"] for c in sample_chats for m in c["messages"]]
    tokenizer = train_tokenizer(corpus, 8192)
    texts = {"rows": records("rows", 4000, tokenizer), "chats": records("chats", 1200, tokenizer)}
    print(f"records ready: {len(texts['rows'])} rows, {len(texts['chats'])} chats", flush=True)
    results = []
    eager = [("rows", False, False), ("rows", True, False), ("chats", False, False), ("chats", True, False),
             ("rows", False, True), ("rows", True, True)]
    for kind, packing, lora in eager:
        results.append(train_setting(config, texts[kind], kind, packing, lora, False, args, peak))
    row_tokens = round(statistics.mean(len(ids) for ids, _ in texts["rows"]))
    generation = generation_figures(config, args.generate_rows, row_tokens, args.smoke)
    print(generation, flush=True)
    if not args.smoke:
        report(results, generation, args, gpu, peak)  # written now too: compiling below may outlast a time limit
    for kind in ("rows", "chats"):
        results.append(train_setting(config, texts[kind], kind, True, False, True, args, peak))
    if not args.smoke:
        report(results, generation, args, gpu, peak)


def train_setting(config: LlamaConfig, examples, kind: str, packing: bool, lora: bool, compiled: bool, args,
                  peak: float | None) -> dict:
    mean_length = statistics.mean(len(ids) for ids, _ in examples)
    batch_records = max(1, round(args.tokens_per_step / mean_length))
    started = time.perf_counter()
    try:
        figures = train_figures(config, examples, batch_records, args.pack_length, packing, lora, compiled,
                                args.steps, args.warmup, peak)
    except Exception as exc:  # one failing setting (say, compilation) must not cost the others' figures
        figures = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        torch._dynamo.reset()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    figures.update(records=kind, packing=packing, mode="LoRA r=16" if lora else "full", compiled=compiled,
                   records_per_step=batch_records, mean_record_tokens=mean_length,
                   wall_seconds=time.perf_counter() - started)
    print(figures, flush=True)
    return figures


def report(results: list[dict], generation: dict, args, gpu: str, peak: float | None) -> None:
    figures = {"training": results, "generation": generation, "machine": machine(), "gpu": gpu, "peak_flops": peak,
               "versions": versions("llmsynth", "torch", "transformers", "peft", "accelerate"), "setting": vars(args)}
    lines = ["| records | mode | packing | compiled | records/step | real tokens/s | MFU | median step (s) | "
             "peak memory (GiB) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['records']} | {r['mode']} | {'on' if r['packing'] else 'off'} | "
                         f"{'yes' if r['compiled'] else 'no'} | failed: {r['error']} | | | | |")
            continue
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        lines.append(f"| {r['records']} ({r['mean_record_tokens']:.0f} tokens) | {r['mode']} | "
                     f"{'on' if r['packing'] else 'off'} | {'yes' if r['compiled'] else 'no'} | {r['records_per_step']} | "
                     f"{r['tokens_per_second']:,.0f} | {mfu} | {r['median_step_seconds']:.3f} | "
                     f"{r['peak_memory_gib']:.1f} |")
    g = generation
    body = f"""Machine: {figures['machine']}. Versions: {', '.join(f'{k} {v}' for k, v in figures['versions'].items())}.
SmolLM2-135M architecture (30 layers, width 576, vocabulary 49,152), random weights, bf16 autocast with fp32 master
weights, fused AdamW, gradient clipping: llmsynth's own training step and batches. About {args.tokens_per_step:,}
real tokens per step; packing lays records end to end in rows of up to {args.pack_length} tokens with a
block-diagonal causal mask. {args.steps} timed steps after {args.warmup} warm-up steps. MFU = model FLOPs per real
token (6 x matmul parameters for full fine-tuning, 4 x for LoRA, plus causal attention) / {(peak or 0) / 1e12:.0f}
TFLOP/s dense bf16 peak.

{chr(10).join(lines)}

Generation, same architecture in bf16, {g['rows_per_batch']} rows per batch:

| sampler | rows/s |
|---|---|
| llmsynth constrained row sampler (demo table schema, every row valid) | {g['constrained_rows_per_second']:,.0f} |
| HF generate, dynamic cache, {g['new_tokens_per_row']} new tokens per row (no constraints) | {g['hf_generate_dynamic_cache_rows_per_second']:,.0f} |
| HF generate, static cache + torch.compile, same | {g['hf_generate_static_cache_compiled_rows_per_second']:,.0f} |

Reproduce on a GPU machine: `python eval/bench_gpu.py` (llmsynth installed; nothing is downloaded).
"""
    write_section(f"GPU training and generation throughput (`eval/bench_gpu.py`, {gpu})", body, figures, "bench_gpu")


if __name__ == "__main__":
    main()
