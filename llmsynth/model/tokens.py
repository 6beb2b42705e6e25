"""The raw bytes each token stands for, which is what value constraints are checked against."""

from __future__ import annotations

import json
import re
from functools import lru_cache


@lru_cache(maxsize=1)
def _byte_level_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes)}


def _is_byte_level(tokenizer) -> bool:
    decoder = json.loads(tokenizer.backend_tokenizer.to_str()).get("decoder") or {}
    kinds = [decoder.get("type")] + [d.get("type") for d in decoder.get("decoders", [])]
    return "ByteLevel" in kinds


def token_bytes(tokenizer) -> list[bytes]:
    """Bytes per token id; special tokens map to b'' (they are never value content), and so do a tiny tokenizer's
    column segments and joined categories (added tokens with spaces, which the sampler writes itself or reads through
    the encoder); a whole value, added as a single word (see `train_tokenizer`), maps to its text."""
    vocab = tokenizer.get_vocab()
    table = [b""] * len(tokenizer)
    special = set(tokenizer.all_special_ids)
    whole_values = {index for index, token in tokenizer.added_tokens_decoder.items() if token.single_word}
    byte_level = _is_byte_level(tokenizer)
    decode = _byte_level_decoder()
    for piece, index in vocab.items():
        if index in special or index >= len(table):
            continue
        if index in whole_values:
            table[index] = piece.encode()
        elif byte_level:
            table[index] = bytes(decode[ch] for ch in piece) if all(ch in decode for ch in piece) else b""
        elif match := re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece):
            table[index] = bytes([int(match.group(1), 16)])
        else:
            table[index] = piece.replace("▁", " ").encode()
    return table
