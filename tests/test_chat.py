"""Synthetic conversations: reading and validating, serialization, structurally valid generation, conditioning,
save/load, the command line; real scrubber, real tiny models (network blocked by conftest)."""

import json
import re
from collections import Counter

import pytest
import torch
from click.testing import CliRunner
from transformers import DynamicCache

from llmsynth.synthesizers.chat import ChatSynthesizer
from llmsynth.cli import main
from llmsynth.data.chats import read_chats, write_chats
from llmsynth.data.demo import CHAT_INTENTS, support_chats
from llmsynth.errors import DataError, GenerateError
from llmsynth.evaluate.text import conversation_text, distinct_n, distinct_n_matched, label_agreement, verbatim_share
from llmsynth.generate.chats import (
    Novelty,
    TurnConstraint,
    TurnRules,
    _bodies,
    _messages,
    _plausible,
    generate_chats,
    turn_token_limit,
)
from llmsynth.generate.sampler import forward_cached
from llmsynth.model import TinyModelConfig, tiny_model, train_tokenizer
from llmsynth.serialize.chat import FALLBACK_TEMPLATE, MARKERS, ChatEncoder, ChatRecord, chat_template
from llmsynth.serialize.tabular import IGNORE
from llmsynth.synthesizers import read_manifest
from llmsynth.train.config import Recipe, TrainConfig


def chat_recipe(epochs: int = 3) -> Recipe:
    return Recipe(tiny=TinyModelConfig(vocab_size=800, hidden_size=32, num_layers=2, num_heads=2,
                                       intermediate_size=64, max_length=1024),
                  train=TrainConfig(epochs=epochs, batch_size=16, learning_rate=3e-3))


@pytest.fixture(scope="module")
def demo():
    return support_chats(70, seed=5)


@pytest.fixture(scope="module")
def chat_synth(demo):
    return ChatSynthesizer(chat_recipe()).fit(demo.conversations, progress=False)


def _jsonl(tmp_path, lines: list, name="chats.jsonl"):
    path = tmp_path / name
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        "metadata": {"intent": "refund"}}


@pytest.mark.parametrize("bad, message", [
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
     "user messages only; it needs both user and assistant turns"),
    ({"messages": []}, "the conversation has no messages"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                   {"role": "assistant", "content": "c"}]}, "messages 1 and 2 are both from the user"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "  "}]}, "message 2 is empty"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"},
                   {"role": "assistant", "content": "c"}]}, "message 2: a system message may only open"),
    ({"messages": GOOD["messages"], "metadata": {"tags": ["a", "b"]}}, "metadata must be flat"),
])
def test_training_input_that_is_no_dialogue_is_refused_with_its_line(tmp_path, bad, message):
    path = _jsonl(tmp_path, [GOOD, bad])
    with pytest.raises(DataError, match=rf"chats.jsonl: line 2: .*{message}"):
        read_chats(path, dialogues=True)
    assert len(read_chats(path, skip_bad_lines=True, dialogues=True).conversations) == 1


def test_scrubbing_takes_conversations_that_training_refuses(tmp_path):
    one_sided = {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}
    assert len(read_chats(_jsonl(tmp_path, [GOOD, one_sided])).conversations) == 2


def test_encoder_marks_turns_and_masks_the_user_side_when_asked():
    record = ChatRecord(("refund",), (("user", "I want my money"), ("assistant", "Sure, done")))
    tokenizer = train_tokenizer(["I want my money", "Sure, done", " intent is refund"], 300,
                                whole_tokens=[" intent is", ", intent is"], markers=MARKERS)
    everything = ChatEncoder(tokenizer, ["intent"], loss_on="all").encode(record, [0])
    assistant = ChatEncoder(tokenizer, ["intent"], loss_on="assistant").encode(record, [0])
    ids, labels = everything
    text = tokenizer.decode(ids, skip_special_tokens=False)
    assert text.startswith("<bos> intent is refund<|conversation|><|user|>I want my money<|assistant|>Sure, done")
    assert text.endswith("<eor>") and labels[-1] == tokenizer.eos_token_id
    user = ids.index(tokenizer.convert_tokens_to_ids("<|user|>"))
    agent = ids.index(tokenizer.convert_tokens_to_ids("<|assistant|>"))
    assert all(label != IGNORE for label in labels[user:agent])
    masked = assistant[1]
    assert masked[user] != IGNORE and all(label == IGNORE for label in masked[user + 1:agent])
    assert all(label != IGNORE for label in masked[agent:])


CHATML = ["<|im_start|>", "<|im_end|>"]


def _instruct_tokenizer(texts):
    """A tokenizer like an instruct model's: ChatML's special tokens and its chat template."""
    tokenizer = train_tokenizer(texts, 400, markers=CHATML)
    tokenizer.chat_template = FALLBACK_TEMPLATE.read_text()
    return tokenizer


@pytest.mark.parametrize("instruct", [True, False])
def test_template_encoder_writes_the_chat_template_with_metadata_in_a_system_turn(instruct):
    record = ChatRecord(("refund",), (("user", "I want my money"), ("assistant", "Sure, done")))
    texts = ["I want my money", "Sure, done", " intent is refund"] * 3
    tokenizer = _instruct_tokenizer(texts) if instruct else train_tokenizer(texts, 300)  # no template: ChatML text
    ids, labels = ChatEncoder(tokenizer, ["intent"], style="template").encode(record, [0])
    messages = [{"role": "system", "content": " intent is refund"}, {"role": "user", "content": "I want my money"},
                {"role": "assistant", "content": "Sure, done"}]
    written = tokenizer.apply_chat_template(messages, chat_template=chat_template(tokenizer), tokenize=False)
    assert tokenizer.decode(ids) == written + tokenizer.eos_token
    _, masked = ChatEncoder(tokenizer, ["intent"], "assistant", style="template").encode(record, [0])
    user = tokenizer.encode("I want my money", add_special_tokens=False)
    start = next(i for i in range(len(ids)) if ids[i:i + len(user)] == user)
    assert all(label == IGNORE for label in masked[start:start + len(user)])
    assert labels[start:start + len(user)] == user and masked[-1] == labels[-1] == tokenizer.eos_token_id


@pytest.fixture(scope="module")
def instruct_base(tmp_path_factory, demo):
    folder = tmp_path_factory.mktemp("instruct")
    tokenizer = _instruct_tokenizer([m["content"] for c in demo.conversations for m in c["messages"]])
    tiny_model(TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_length=2048),
               tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_lora_on_a_pretrained_base_writes_valid_conditioned_conversations_in_its_template(demo, instruct_base,
                                                                                         tmp_path):
    synth = ChatSynthesizer(chat_recipe(epochs=1), base_model=str(instruct_base))
    synth.fit(demo.conversations[:40], scrub=False, progress=False)
    refunds = synth.sample(6, conditions={"intent": "refund"}, seed=2, temperature=0.8)
    assert all(synth.rules.valid(c) and c["metadata"]["intent"] == "refund" for c in refunds)
    synth.save(tmp_path / "model")
    assert read_manifest(tmp_path / "model", "chat")["serialization"]["style"] == "chat-template"
    loaded = ChatSynthesizer.load(tmp_path / "model")
    ids = torch.tensor([synth.tokenizer.encode("Hi, I want a refund for my order")])
    with torch.no_grad():  # the same weights to the last bit: an unmerged adapter differs from a merged one by rounding
        assert torch.equal(synth.ready_model()(ids).logits, loaded.ready_model()(ids).logits)
    assert loaded.sample(6, conditions={"intent": "refund"}, seed=2, temperature=0.8) == refunds
    with_system = [{**c, "messages": [{"role": "system", "content": "Be brief."}, *c["messages"]]}
                   for c in demo.conversations[:40]]
    with pytest.raises(DataError, match="system turn"):
        ChatSynthesizer(chat_recipe(epochs=1), base_model=str(instruct_base)).fit(with_system, scrub=False,
                                                                                  progress=False)


@pytest.mark.parametrize("style, markers", [("markers", MARKERS), ("template", CHATML), ("template", [])])
def test_an_untrained_model_still_writes_only_valid_conversations(demo, style, markers):
    """The rules hold by construction: random weights, short turns and few turns still give valid output; in our
    markers, in a chat template's special tokens, and in a template written in plain text."""
    records = [ChatRecord((), tuple((m["role"], m["content"]) for m in c["messages"])) for c in demo.conversations]
    tokenizer = train_tokenizer([t for r in records for _, t in r.turns], 400, markers=markers)
    torch.manual_seed(0)
    model = tiny_model(TinyModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32), tokenizer)
    encoder = ChatEncoder(tokenizer, [], style=style)
    rules = TurnRules(first_roles=["user"], last_roles=["assistant"], min_turns=2, max_turns=4, max_turn_tokens=6)
    from llmsynth.data.schema import Schema

    batches = list(generate_chats(model.eval(), encoder, Schema(columns=[]), rules, 24, seed=3, batch_size=8,
                                  progress=False))
    conversations = [c for batch in batches for c in batch]
    assert len(conversations) == 24 and all(rules.valid(c) for c in conversations)
    assert all(c["metadata"] == {} for c in conversations)


def test_turns_hold_only_characters_the_training_turns_hold(demo):
    """A base's vocabulary holds scripts, symbols and line breaks a corpus never has (SmolLM2 wrote "Peggyí" and
    web boilerplate after a line break on the demo chats); turns are written in the training turns' characters."""
    records = [ChatRecord((), tuple((m["role"], m["content"]) for m in c["messages"])) for c in demo.conversations]
    tokenizer = train_tokenizer([t for r in records for _, t in r.turns] + ["Zürich ü ß\n\n"], 400, markers=MARKERS)
    torch.manual_seed(0)
    model = tiny_model(TinyModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32), tokenizer)
    encoder = ChatEncoder(tokenizer, [])
    learned = TurnRules.learn(records, encoder)
    assert "\n" not in learned.characters and "a" in learned.characters
    rules = learned.model_copy(update={"characters": "abcdefghij ", "max_turn_tokens": 8})
    from llmsynth.data.schema import Schema

    conversations = [c for batch in generate_chats(model.eval(), encoder, Schema(columns=[]), rules, 16, seed=2,
                                                   progress=False) for c in batch]
    written = {ch for c in conversations for m in c["messages"] for ch in m["content"]}
    assert written and written <= set("abcdefghij ") and all(rules.valid(c) for c in conversations)


def test_the_model_decides_where_a_conversation_ends_before_the_context_is_spent(demo):
    """Random weights choose between going on and ending at every turn the rules let end; once a conversation has
    reached `context` tokens it ends after the turn under way (a turn later where the user would close it)."""
    records = [ChatRecord((), tuple((m["role"], m["content"]) for m in c["messages"])) for c in demo.conversations]
    tokenizer = train_tokenizer([t for r in records for _, t in r.turns], 400, markers=MARKERS)
    torch.manual_seed(0)
    model = tiny_model(TinyModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32), tokenizer)
    encoder = ChatEncoder(tokenizer, [])
    rules = TurnRules(first_roles=["user"], last_roles=["assistant"], min_turns=2, max_turns=12, max_turn_tokens=5)
    from llmsynth.data.schema import Schema

    def conversations(context=None):
        return [c for batch in generate_chats(model.eval(), encoder, Schema(columns=[]), rules, 40, seed=1,
                                              batch_size=16, progress=False, context=context) for c in batch]

    def turns(conversations):
        return Counter(len(c["messages"]) for c in conversations)

    free = conversations()
    assert len(turns(free)) >= 3 and all(rules.valid(c) for c in free)
    bounded = conversations(context=24)
    assert max(turns(bounded)) < max(turns(free)) and all(rules.valid(c) for c in bounded)
    assert turns(conversations(context=0)) == {2: 40}  # full from the start: as few turns as the rules allow
    restored = TurnRules.model_validate(json.loads(json.dumps(rules.model_dump())))
    assert restored == rules  # saved in the manifest


def test_one_very_long_training_turn_does_not_set_every_turn_s_limit():
    bulk = [20 + k % 30 for k in range(4000)]
    assert turn_token_limit(bulk) == int(49 * 1.25) + 1
    assert turn_token_limit([*bulk, 9000]) == turn_token_limit(bulk)  # one outlier in 4,001 turns
    assert turn_token_limit([*bulk, *[300] * 10]) == int(300 * 1.25) + 1  # a tail of 1 in 400 is kept


def test_a_turn_that_closes_as_a_training_turn_is_sampled_again(demo):
    """Random weights, so the test needs no training: the turns one run writes become the "training turns" of the
    next run with the same seed, which then starts the same way and must sample those turns again."""
    records = [ChatRecord((), tuple((m["role"], m["content"]) for m in c["messages"])) for c in demo.conversations]
    tokenizer = train_tokenizer([t for r in records for _, t in r.turns], 400, markers=MARKERS)
    torch.manual_seed(1)
    model = tiny_model(TinyModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32), tokenizer)
    encoder = ChatEncoder(tokenizer, [])
    rules = TurnRules(first_roles=["user"], last_roles=["assistant"], min_turns=2, max_turns=4, max_turn_tokens=12)
    from llmsynth.data.schema import Schema

    def conversations(novelty=None, counts=None, temperature=1.0):
        return [c for batch in generate_chats(model.eval(), encoder, Schema(columns=[]), rules, 16, seed=3,
                                              batch_size=8, temperature=temperature, progress=False,
                                              novelty=novelty, counts=counts)
                for c in batch]

    first = conversations()
    turns = [m["content"] for c in first for m in c["messages"]]
    novelty = Novelty.learn([[m["content"] for m in c["messages"]] for c in first], min_chars=10)
    assert len(novelty.digests) > 10
    counts = Counter()
    second = conversations(novelty, counts)
    assert all(rules.valid(c) for c in second)
    again = [m["content"] for c in second for m in c["messages"]]
    assert verbatim_share(again, turns, min_chars=10) == 0 and counts["kept"] == 0
    assert counts["resampled"] >= 16  # every conversation's first long turn at least
    assert conversations() == first  # the same seed without the filter: the first run again
    # Greedy: a turn sampled again sees just what it saw before, so it comes out the same copy every time until
    # the retries are spent and it has to go on. (Greedy writes one conversation 16 times: learned from one.)
    greedy = conversations(temperature=0)
    counts = Counter()
    conversations(Novelty.learn([[m["content"] for m in greedy[0]["messages"]]], min_chars=10), counts, 0)
    assert counts["resampled"] >= 16 * Novelty.RETRIES and counts["resampled"] % Novelty.RETRIES == 0


def test_a_stock_phrase_many_conversations_share_may_be_written_again():
    stock = "If you still have the card, I'd recommend replacing it to be safe."
    own = "My card ending in 4471 was taken at the station on Friday night."
    shared = [[stock, f"Thanks, {name}, that is all I needed for today."] for name in ("Ann", "Bo", "Cy", "Di")]
    assert Novelty.learn(shared).copies(stock.encode())  # four conversations: still one of a few records'
    novelty = Novelty.learn([*shared, [stock], [own]])
    assert not novelty.copies(stock.encode()) and novelty.copies(own.encode())
    assert novelty.copies(b"Thanks, Ann, that is all I needed for today.")


def test_a_turn_masked_out_of_the_cache_leaves_the_model_where_it_was():
    """What sampling a turn again relies on: ids masked out of the KV cache, with the turn's opening id fed again at
    its old position, give the logits the model gave before that turn was written."""
    tokenizer = train_tokenizer(["hello there", "how can I help you today"], 300, markers=MARKERS)
    torch.manual_seed(0)
    model = tiny_model(TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
                       tokenizer).eval()
    prefix = torch.tensor([[5, 9, 17, 33, 8]])
    with torch.no_grad():
        before = model(input_ids=prefix).logits[0, -1]
        cache = DynamicCache()
        written = torch.cat([prefix, torch.tensor([[40, 41, 42]])], dim=1)
        forward_cached(model, cache, input_ids=written)
        mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0, 1]])  # the opening id (position 4) and the turn (5-7) out
        again = forward_cached(model, cache, input_ids=prefix[:, -1:], attention_mask=mask,
                               position_ids=torch.tensor([[4]])).logits[0, -1]
    assert torch.allclose(again, before, atol=1e-5)


def test_guidance_writes_what_the_mixed_logits_of_the_header_and_no_header_choose(demo):
    """Classifier-free guidance in the batched KV-cache loop (each row's twin after an empty header, at its own
    positions) against plain full-sequence forward passes, greedy, on random weights: the same ids. Then with the
    novelty filter: greedy, a turn sampled again comes out the same copy every time until the retries are spent,
    which holds only if its twin's copy is masked out too."""
    tokenizer = train_tokenizer([m["content"] for c in demo.conversations for m in c["messages"]]
                                + [" intent is refund", " channel is email", " intent is card_lost"], 400,
                                markers=MARKERS)
    torch.manual_seed(2)
    model = tiny_model(TinyModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32),
                       tokenizer).eval()
    for weight in model.parameters():  # drawn wide, so that every token depends on the whole context
        if weight.dim() == 2:
            torch.nn.init.normal_(weight, std=0.3)
    encoder = ChatEncoder(tokenizer, ["intent", "channel"])
    rules = TurnRules(first_roles=["user"], last_roles=["assistant"], min_turns=2, max_turns=4, max_turn_tokens=12)
    constraint = TurnConstraint(encoder, rules, len(tokenizer))
    prompts = [encoder.header_ids(["refund", "email"], [0, 1])[0], encoder.header_ids(["card_lost"], [0])[0],
               encoder.header_ids(["email", "refund"], [1, 0])[0]]
    empty = encoder.header_ids([], [])[0]

    def written(constraint, counts=None):
        return _bodies(model, encoder, constraint, prompts, torch.Generator(), 0.0, 1.0,
                       Counter() if counts is None else counts, guidance=3.0)

    guided = written(constraint)
    for prompt, messages in zip(prompts, guided):
        state, ids = constraint.first(), []
        with torch.no_grad():
            while not state.done:
                header, none = (model(input_ids=torch.tensor([p + ids])).logits[0, -1] for p in (prompt, empty))
                allowed = constraint.allowed(state) & _plausible(header[None], constraint.allowed(state)[None])[0]
                mixed = (none + 3.0 * (header - none)).masked_fill(~allowed, -torch.inf)
                constraint.update(state, int(mixed.argmax()))
                ids.append(int(mixed.argmax()))
        assert messages == _messages(encoder, constraint.pieces, ids)
    counts = Counter()
    novelty = Novelty.learn([[m["content"] for m in messages] for messages in guided], min_chars=10)
    assert all(rules.valid({"messages": m}) for m in written(TurnConstraint(encoder, rules, len(tokenizer), novelty),
                                                             counts))
    assert counts["resampled"] >= 3 * Novelty.RETRIES and counts["resampled"] % Novelty.RETRIES == 0


def test_guidance_is_on_by_default_and_strengthens_the_conditioning(chat_synth):
    refunds = chat_synth.sample(6, conditions={"intent": "refund"}, seed=3)
    assert refunds == chat_synth.sample(6, conditions={"intent": "refund"}, seed=3, guidance=2.0)
    assert refunds != chat_synth.sample(6, conditions={"intent": "refund"}, seed=3, guidance=1.0)
    with pytest.raises(GenerateError, match="guidance must be at least 1"):
        chat_synth.sample(2, guidance=0.5)


def test_guidance_chooses_among_the_tokens_the_conditional_model_finds_plausible():
    logits = torch.tensor([[5.0, 4.0, 0.0, -3.0], [5.0, 4.0, 0.0, -3.0]])
    allowed = torch.tensor([[True, True, True, True], [False, True, True, True]])
    # At least a tenth of the likeliest allowed token's probability; never none (the likeliest allowed is in).
    assert _plausible(logits, allowed).tolist() == [[True, True, False, False], [False, True, False, False]]


def test_generated_conversations_are_valid_conditioned_and_seeded(chat_synth):
    refunds = chat_synth.sample(12, conditions={"intent": "refund", "channel": "email"}, seed=4)
    assert len(refunds) == 12 and all(chat_synth.rules.valid(c) for c in refunds)
    assert {(c["metadata"]["intent"], c["metadata"]["channel"]) for c in refunds} == {("refund", "email")}
    assert all(isinstance(c["metadata"]["resolved"], bool) for c in refunds)
    assert chat_synth.sample(12, conditions={"intent": "refund", "channel": "email"}, seed=4) == refunds


def test_a_requested_mix_of_intents_is_met_exactly(chat_synth):
    mixed = chat_synth.sample(20, mix={"intent": {"refund": 0.3, "card_lost": 0.7}}, seed=1)
    assert Counter(c["metadata"]["intent"] for c in mixed) == {"refund": 6, "card_lost": 14}
    partly = Counter(c["metadata"]["intent"] for c in chat_synth.sample(20, mix={"intent": {"refund": 0.5}}, seed=1))
    assert partly["refund"] >= 10 and set(partly) <= set(CHAT_INTENTS)  # the other half drawn by the model


def test_each_conversation_can_be_asked_for_its_own_fields(chat_synth):
    """How the sampler writes anew, in one batch, conversations the re-scrub made into copies."""
    requests = [{"intent": "refund", "channel": "email"}, {"intent": "card_lost"}, {"intent": "refund"}]
    batch, = generate_chats(chat_synth.ready_model(), chat_synth.encoder, chat_synth.metadata_schema,
                            chat_synth.rules, n=len(requests), requests=requests, seed=5, progress=False)
    assert [c["metadata"]["intent"] for c in batch] == ["refund", "card_lost", "refund"]
    assert batch[0]["metadata"]["channel"] == "email" and all(chat_synth.rules.valid(c) for c in batch)
    with pytest.raises(GenerateError, match="value not seen in training"):
        next(generate_chats(chat_synth.ready_model(), chat_synth.encoder, chat_synth.metadata_schema,
                            chat_synth.rules, n=1, requests=[{"intent": "weather"}], progress=False))


@pytest.mark.parametrize("conditions, mix, message", [
    ({"mood": "angry"}, None, "unknown field 'mood'"),
    ({"intent": "weather"}, None, "value not seen in training"),
    (None, {"intent": {"refund": 0.8, "card_lost": 0.4}}, "add up to at most 1"),
    ({"intent": "refund"}, {"intent": {"refund": 0.5}}, "either fixed by a condition or mixed"),
])
def test_bad_conditions_are_clear_errors(chat_synth, conditions, mix, message):
    with pytest.raises(GenerateError, match=message):
        chat_synth.sample(4, conditions=conditions, mix=mix)


def test_no_source_pii_reaches_the_output_and_stray_pii_is_rescrubbed(chat_synth, demo):
    output = chat_synth.sample(30, seed=2)
    text = "\n".join(m["content"] for c in output for m in c["messages"])
    # As written: a memorized value comes back as the source wrote it; a 3-epoch model's salad of sub-words can spell
    # "goran" (go + ran) with no "Goran" in its training text, which replayed_values (any case) would count.
    assert {s.value for s in demo.pii if re.search(rf"(?<!\w){re.escape(s.value)}(?!\w)", text)} == set()
    stray = [{"messages": [{"role": "user", "content": "mail me at real.person@example.org"},
                           {"role": "assistant", "content": "ok"}], "metadata": {}}]
    from llmsynth.scrub import ScrubConfig, scrub_chats

    cleaned, report, _ = scrub_chats(stray, ScrubConfig(), progress=False, keep=chat_synth.surrogates)
    assert report["entities"] == {"EMAIL_ADDRESS": 1} and "real.person" not in json.dumps(cleaned)
    kept_name = next(w for w in sorted(chat_synth.surrogates) if w.isalpha() and len(w) > 3).title()  # hash order varies
    kept, report, _ = scrub_chats([{"messages": [{"role": "user", "content": f"I am {kept_name}."},
                                                 {"role": "assistant", "content": "ok"}], "metadata": {}}],
                                  ScrubConfig(), progress=False, keep=chat_synth.surrogates)
    assert kept[0]["messages"][0]["content"] == f"I am {kept_name}."


def test_save_and_load_give_the_same_conversations(chat_synth, tmp_path):
    chat_synth.save(tmp_path / "model")
    manifest = read_manifest(tmp_path / "model", "chat")
    assert manifest["turn_rules"]["first_roles"] == ["user"] and manifest["scrub"]["entities"]
    assert [c.name for c in ChatSynthesizer.load(tmp_path / "model").metadata_schema.columns] == \
        ["intent", "channel", "resolved"]
    loaded = ChatSynthesizer.load(tmp_path / "model")
    assert loaded.sample(6, seed=9) == chat_synth.sample(6, seed=9)
    assert loaded.novelty.digests == chat_synth.novelty.digests and len(loaded.novelty.digests) > 20
    digests = (tmp_path / "model" / "turn_digests.json").read_text()
    assert not any(m["content"] in digests for c in chat_synth.sample(6, seed=9) for m in c["messages"])
    with pytest.raises(Exception, match="holds a 'chat' synthesizer, not a 'tabular' one"):
        read_manifest(tmp_path / "model", "tabular")


def test_cli_trains_and_generates_conversations(tmp_path, demo):
    source = tmp_path / "chats.jsonl"
    write_chats(source, demo.conversations)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps(chat_recipe(epochs=1).model_dump()))
    runner = CliRunner()
    trained = runner.invoke(main, ["train", str(source), "--kind", "chat", "-o", str(tmp_path / "m"),
                                   "--recipe", str(recipe)])
    assert trained.exit_code == 0, trained.output
    assert "conversations" in trained.output and "scrubbed first" in trained.output
    out = tmp_path / "synth.jsonl"
    generated = runner.invoke(main, ["generate", str(tmp_path / "m"), "-n", "9", "-o", str(out), "--condition",
                                     "intent=refund", "--mix", "channel=email:0.5,chat:0.5"])
    assert generated.exit_code == 0, generated.output
    conversations = read_chats(out, dialogues=True).conversations
    assert len(conversations) == 9 and {c["metadata"]["intent"] for c in conversations} == {"refund"}
    copies = runner.invoke(main, ["generate", str(tmp_path / "m"), "-n", "3", "-o", str(out), "--allow-copies"])
    assert copies.exit_code == 0 and len(read_chats(out).conversations) == 3, copies.output
    bad = runner.invoke(main, ["generate", str(tmp_path / "m"), "-n", "2", "-o", str(tmp_path / "x.jsonl"),
                               "--condition", "intent=weather"])
    assert bad.exit_code == 2 and "value not seen in training" in bad.output
    assert not (tmp_path / "x.jsonl").exists()
    wrong = runner.invoke(main, ["generate", str(tmp_path / "m"), "-n", "2", "-o", str(tmp_path / "x.csv")])
    assert wrong.exit_code == 2 and "written as .jsonl" in wrong.output


def test_text_figures_have_known_answers():
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["a b a b", "c d"], 2, limit=2) == 1.0
    long_turn = "x" * 41
    assert verbatim_share([long_turn, "y" * 41, "short"], [long_turn]) == 0.5
    chats = support_chats(80, seed=2).conversations
    assert label_agreement(chats, chats, "intent") > 0.9


def test_chat_demo_runs_the_whole_pipeline_and_reports(tmp_path):
    """The real `llmsynth demo --kind chat`, on a small corpus and a few seconds of training."""
    result = CliRunner().invoke(main, ["demo", "--kind", "chat", "-o", str(tmp_path), "--rows", "100",
                                       "--samples", "14", "--max-minutes", "0.05"])
    assert result.exit_code == 0, result.output
    assert "structurally valid" in result.output and "100.0%" in result.output
    synthetic = read_chats(tmp_path / "synthetic.jsonl", dialogues=True).conversations
    assert len(synthetic) == 14 and Counter(c["metadata"]["intent"] for c in synthetic) == {i: 2 for i in CHAT_INTENTS}
    assert (tmp_path / "model" / "manifest.json").is_file() and (tmp_path / "holdout.jsonl").is_file()
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["kind"] == "chat" and metrics["conversations"]["synthetic"] == 14
    assert "privacy.verbatim_excess" in result.output


def test_distinct_2_compares_corpora_of_unequal_size_fairly():
    """A random quarter of a corpus has the corpus's diversity: on all n-grams it would look 1.2x+ more diverse."""
    texts = [conversation_text(c) for c in support_chats(400, seed=3).conversations]
    quarter = texts[::4]
    assert distinct_n(quarter) / distinct_n(texts) > 1.2
    matched = distinct_n_matched(texts, quarter)
    assert abs(matched["synthetic"] / matched["real"] - 1) < 0.05
    assert matched["ngrams"] == distinct_n_matched(quarter, quarter)["ngrams"]  # the smaller corpus's count
