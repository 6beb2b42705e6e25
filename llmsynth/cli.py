"""The `llmsynth` command line: one small function per command that parses options and calls the library (mostly
`llmsynth.pipeline`); errors become messages and exit codes."""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path

import click

from llmsynth.cli_options import (
    DEMO_OPTIONS, EVALUATE_OPTIONS, FILE, GENERATE_OPTIONS, SCRUB_OPTIONS, SWEEP_OPTIONS, TRAIN_OPTIONS,
    check_generate_options, command_line, synthesizer_options,
)
from llmsynth.errors import LlmsynthError

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


def _say(lines: list[str]) -> None:
    """The library's lines for the user: warnings (and skipped input) yellow, on stderr."""
    for line in lines:
        warning = line.startswith(("warning", "skipped"))
        click.secho(line, err=warning, fg="yellow" if warning else None)


def _quiet_libraries() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


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
    llmsynth train chats.jsonl --kind chat -o chatmodel/ --base-model smollm2-135m-instruct
    llmsynth generate chatmodel/ -n 500 -o synth.jsonl --condition intent=refund
    llmsynth demo --kind chat                        the conversation pipeline on bundled support chats
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _interrupt)  # a killed pipeline job cleans up like Ctrl-C


@main.command()
@SCRUB_OPTIONS
def scrub(input_path, output, kind, report, config_path, mode, raw_pii, column_kinds, skip_bad_lines, processes,
          allow_no_ner):
    """Replace PII in INPUT (Presidio, offline): identifier columns whole, free text and chat turns span by span,
    each real value by the same surrogate everywhere."""
    import json

    from llmsynth.data.io import write_text
    from llmsynth.pipeline import scrub_file
    from llmsynth.scrub import ScrubConfig, load_scrub_config, write_raw_pii

    config = load_scrub_config(config_path) if config_path else ScrubConfig()
    config = config.model_copy(update={"mode": mode or config.mode, "allow_no_ner": allow_no_ner or config.allow_no_ner})
    started = time.perf_counter()
    summary, raw, lines = scrub_file(input_path, output, kind, config, column_kinds, skip_bad_lines, processes)
    _say(lines)
    if report is not None:
        write_text(report, json.dumps({"input": str(input_path), **summary}, indent=2))
    if raw_pii is not None:
        write_raw_pii(raw_pii, raw)
    if summary.get("ner") is False:
        click.secho("warning: NER was off (no spaCy model): names and places may remain", err=True, fg="yellow")
    click.echo(f"done in {time.perf_counter() - started:.1f}s -> {output}" + (f"; report {report}" if report else ""))


@main.command()
@TRAIN_OPTIONS
def train(input_path, model_dir, kind, recipe, base_model, epochs, max_minutes, column_kinds, order_by, resume,
          overwrite, seed, no_scrub, scrub_config, allow_no_ner, loss_on, canary_counts, audit_canaries, dp_epsilon):
    """Scrub INPUT, learn it and save the synthesizer to MODEL_DIR.

    INPUT is a table (CSV, Parquet or JSONL); with --kind chat, conversations (JSONL, one
    {"messages": [{"role", "content"}...], "metadata": {...}} per line, user and assistant alternating);
    with --kind relational, a folder with relations.yaml or a database URL."""
    from llmsynth.data.canaries import canary_path
    from llmsynth.pipeline import training_lines
    from llmsynth.processes import process_state
    from llmsynth.scrub import ScrubConfig, load_scrub_config
    from llmsynth.synthesizers import MANIFEST, new_synthesizer

    _quiet_libraries()
    if (model_dir / MANIFEST).exists() and not (overwrite or resume):
        raise click.UsageError(f"{model_dir} already holds a trained synthesizer; pass --overwrite or choose another -o")
    if no_scrub and scrub_config:
        raise click.UsageError("--no-scrub and --scrub-config contradict each other; pass one")
    options = synthesizer_options(kind, loss_on, column_kinds, order_by)
    if no_scrub:
        click.secho("warning: --no-scrub: training on the data as given; PII in it can be memorized", err=True,
                    fg="yellow")
    synth = new_synthesizer(kind, recipe, base_model, options, epochs=epochs, max_minutes=max_minutes, seed=seed,
                            dp_epsilon=dp_epsilon)
    scrub = load_scrub_config(scrub_config) if scrub_config else ScrubConfig()
    scrub = False if no_scrub else scrub.model_copy(update={"allow_no_ner": allow_no_ner or scrub.allow_no_ner})
    synth.fit(input_path, workdir=model_dir, resume=resume, scrub=scrub, canaries=canary_counts,
              audit_canaries=audit_canaries).save(model_dir)
    if not process_state().is_main_process:
        return  # under `accelerate launch`, one process reports
    _say([*training_lines(synth), f"synthesizer saved to {model_dir}"])
    if synth.canaries is not None:
        inserted = [f"canaries inserted {', '.join(map(str, canary_counts))} times"] if canary_counts else []
        inserted += [f"{audit_canaries} audit canaries (each in or out by a coin flip)"] if audit_canaries else []
        click.echo(f"{'; '.join(inserted)}; their secrets are in {canary_path(model_dir)} (keep it beside, not "
                   "inside, the model)")


@main.command()
@GENERATE_OPTIONS
def generate(model_dir, n, output, seed, conditions, fair, target, mixes, temperature, top_p, batch_size, no_rescrub,
             allow_copies, guidance, num_processes):
    """Sample N valid rows or conversations (or N root rows with their families) from the synthesizer in
    MODEL_DIR and stream them to OUTPUT."""
    from llmsynth.pipeline import check_output, generate_database, generate_file
    from llmsynth.processes import process_state, relaunch
    from llmsynth.synthesizers import copy_summary, load, read_manifest

    _quiet_libraries()
    kind = read_manifest(model_dir).get("kind")
    check_generate_options(kind, mixes, allow_copies, guidance, fair, target, num_processes)
    processes = process_state()
    if num_processes > 1 and processes.num_processes == 1:
        sys.exit(relaunch(num_processes, command_line(click.get_current_context())))
    parallel = f" by {processes.num_processes} processes" if processes.num_processes > 1 else ""
    if kind == "relational":
        database, seconds = generate_database(load(model_dir), n, output, conditions=conditions, seed=seed,
                                              temperature=temperature, top_p=top_p, batch_size=batch_size or 256)
        if database is not None:
            rows = ", ".join(f"{name} {len(table)}" for name, table in database.tables.items())
            click.echo(f"wrote {n} families ({rows} rows) to {output}{parallel} in {seconds:.1f}s "
                       f"({n / seconds:.1f} families/s)")
        return
    output = Path(output)
    check_output(kind, output)
    chat_options = {"mix": mixes, "rescrub": not no_rescrub, "allow_copies": allow_copies,
                    **({} if guidance is None else {"guidance": guidance})}
    done = generate_file(load(model_dir), n, output, conditions=conditions, seed=seed, temperature=temperature,
                         top_p=top_p, batch_size=batch_size,
                         **(chat_options if kind == "chat" else {"fair": fair, "target": target}))
    if not processes.is_main_process:
        return
    unit = "conversations" if kind == "chat" else "rows"
    click.echo(f"wrote {n} {unit} to {output}{parallel} in {done.seconds:.1f}s ({n / done.seconds:.1f} {unit}/s)")
    if kind == "chat" and not no_rescrub:
        found = done.rescrubbed.most_common()
        click.echo("re-scrubbed the output: " + (", ".join(f"{e} {c}" for e, c in found) + " replaced (not training "
                                                 "surrogates)" if found else "no PII beyond the training surrogates"))
    if done.copies:
        click.echo(copy_summary(done.copies))


@main.command("eval")
@EVALUATE_OPTIONS
def evaluate(real_path, holdout_path, synthetic_path, out_dir, kind, model_dir, canary_file, target, label, sensitive,
             raw_pii, thresholds, fail_on, gate, reference_model, seed):
    """Measure fidelity, utility and privacy of SYNTHETIC against the real training records and a holdout; write
    metrics.json and a self-contained report.html to OUTPUT and print pass/warn/fail per check."""
    from llmsynth.evaluate import evaluate_files, write_report
    from llmsynth.pipeline import saved_model_evaluation

    _quiet_libraries()
    started = time.perf_counter()
    model_kind, schema, canaries, training = saved_model_evaluation(model_dir, canary_file)
    if (kind or model_kind) == "relational":
        from llmsynth.pipeline import evaluate_databases

        if sensitive or gate:
            raise click.UsageError("--sensitive and --gate are for tables and conversations, not related tables yet")
        for line in evaluate_databases(real_path, holdout_path, synthetic_path, out_dir, model_dir)[1]:
            click.echo(line)
        return
    inputs = {"real": Path(real_path), "holdout": Path(holdout_path), "synthetic": Path(synthetic_path)}
    evaluation = evaluate_files(*inputs.values(), kind=kind or model_kind, schema=schema, canaries=canaries,
                                raw_pii=raw_pii, thresholds=thresholds, target=target, label=label,
                                sensitive=sensitive, training=training, seed=seed, progress=True,
                                reference_model=None if reference_model.lower() == "none" else reference_model)
    metrics_path, report_path = write_report(evaluation, out_dir)
    click.echo(f"done in {time.perf_counter() - started:.1f}s -> {metrics_path}, {report_path}")
    if gate:
        from llmsynth.evaluate.gate import gate_release

        record, lines = gate_release(gate, evaluation.metrics, thresholds, inputs, model_dir, out_dir,
                                     ["llmsynth", *command_line(click.get_current_context())])
        _show(lines)
    _print_checks(evaluation, fail_on)
    if gate and not record["passed"]:
        sys.exit(1)


def _show(lines: list[tuple[str, str]]) -> None:
    """(status, line) pairs, coloured by status: pass green, fail red, anything else yellow."""
    for status, line in lines:
        click.secho(line, fg={"pass": "green", "fail": "red"}.get(status, "yellow"))


def _print_checks(evaluation, fail_on: str) -> None:
    """One coloured line per check; exit status 1 when a verdict reaches `fail_on` (a gate in a pipeline)."""
    from llmsynth.evaluate.report import summary_lines

    for warning in evaluation.metrics["warnings"]:
        click.secho(f"warning: {warning}", err=True, fg="yellow")
    _show(summary_lines(evaluation))
    if evaluation.worst in {"fail": ("fail",), "warn": ("warn", "fail"), "never": ()}[fail_on]:
        click.secho(f"failing: a check is at {evaluation.worst!r} (fail on {fail_on})", err=True, fg="red")
        sys.exit(1)


@main.command()
@click.argument("pipeline", metavar="PIPELINE.yaml", type=FILE)
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
@SWEEP_OPTIONS
def sweep(input_path, output, epsilons, kind, target, utility_floor, recipe, epochs, max_minutes, n, audit_canaries,
          no_scrub, processes):
    """Train INPUT at each epsilon (and without DP), evaluate each against one holdout, and recommend the smallest
    epsilon whose utility meets the floor: the privacy-utility frontier in OUTPUT/report.html."""
    from llmsynth.sweep import run_sweep, sweep_config, sweep_lines

    _quiet_libraries()
    config = sweep_config(input_path, output, kind, not no_scrub, n, target, recipe=recipe, epochs=epochs,
                          max_minutes=max_minutes, audit_canaries=audit_canaries)
    _say(sweep_lines(run_sweep(config, epsilons, utility_floor, processes, echo=click.echo)))


@main.command()
@DEMO_OPTIONS
def demo(kind, out_dir, rows, samples, max_minutes, canary_counts):
    """Whole pipeline on bundled data with PII, through `llmsynth run`: split a holdout, scrub, train the tiny
    model, generate, evaluate (report in OUTPUT/report/)."""
    from llmsynth.demo import run_chat_demo, run_relational_demo, run_tabular_demo

    _quiet_libraries()
    if kind == "relational":
        if canary_counts:
            raise click.UsageError("--canaries is not supported for related tables yet")
        run_relational_demo(out_dir, rows or 600, samples or 300, max_minutes=max_minutes or 4.0, echo=click.echo)
        return
    run_demo, size, count = (run_chat_demo, 600, 210) if kind == "chat" else (run_tabular_demo, 4000, 1000)
    _, outcome = run_demo(out_dir, rows or size, samples or count, max_minutes=max_minutes or 3.0,
                          train_options={"canaries": canary_counts}, echo=click.echo)
    _print_checks(outcome.evaluation, "never")


if __name__ == "__main__":
    main()
