"""Reading SentencePiece `.model` files (Kudo & Richardson 2018) without the protobuf library.

A .model is a serialized ModelProto (sentencepiece_model.proto). Protobuf's wire format is a list
of (key, value) records, key = field_number << 3 | wire_type, with wire types 0 (varint),
1 (8 bytes), 2 (length-prefixed bytes: strings and sub-messages) and 5 (4 bytes). The fields used:

    ModelProto      1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
    SentencePiece   1 piece (string), 2 score (float), 3 type (NORMAL=1 UNKNOWN=2 CONTROL=3
                    USER_DEFINED=4 UNUSED=5 BYTE=6)
    TrainerSpec     3 model_type (UNIGRAM=1 BPE=2 WORD=3 CHAR=4), 35 byte_fallback
    NormalizerSpec  2 precompiled_charsmap, 3 add_dummy_prefix, 4 remove_extra_whitespaces,
                    5 escape_whitespaces (all three default true); TrainerSpec 24
                    treat_whitespace_as_suffix

The precompiled charsmap (the nmt_nfkc rules) is a darts-clone double-array trie over UTF-8 byte
strings, followed by the NUL-separated replacement strings; `normalize` applies it with
SentencePiece's longest-match rule and then its whitespace handling (normalizer.cc).
"""
import struct

MODEL_TYPES = {1: "unigram", 2: "bpe"}
SPACE = "\u2581"         # SentencePiece's visible space, "▁"
# SentencePiece.Type: the kinds of piece a vocabulary holds (unigram.py, unigram_train.py)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
UNK_PENALTY = 10.0        # unknown-node score = min score - 10 (sentencepiece unigram_model.cc)


def _varint(data, pos):
    result, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def parse_message(data):
    """{field_number: [values]}: ints for varints, bytes for length-delimited and fixed fields."""
    fields, pos = {}, 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            n, pos = _varint(data, pos)
            if pos + n > len(data):
                raise ValueError(f"field {number}: length {n} runs past the end")
            value, pos = data[pos:pos + n], pos + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            if pos + n > len(data):
                raise ValueError(f"field {number}: truncated fixed-size value")
            value, pos = data[pos:pos + n], pos + n
        else:
            raise ValueError(f"field {number}: unsupported wire type {wire}")
        if number == 0:
            raise ValueError("field number 0 is invalid")
        fields.setdefault(number, []).append(value)
    return fields


def _get(fields, number, default):
    """The last value of a field, of the default's kind (an int for a varint field, bytes for a
    string, sub-message or fixed-size one): a record of the other wire type is a ValueError, not a
    value that fails later where it is used."""
    if number not in fields:
        return default
    value = fields[number][-1]
    if isinstance(value, int) != isinstance(default, int):
        raise ValueError(f"field {number}: expected {'a varint' if isinstance(default, int) else 'bytes'}, "
                         f"got {'a varint' if isinstance(value, int) else 'bytes'}")
    return value


class CharsMap:
    """SentencePiece's precompiled normalization map: longest byte-prefix match in a darts-clone
    double array; each match is replaced by a NUL-terminated string from the tail blob."""

    def __init__(self, blob):
        if len(blob) < 4:
            raise ValueError("precompiled_charsmap: shorter than its 4-byte header")
        (trie_size,) = struct.unpack_from("<I", blob, 0)
        if trie_size % 4 or 4 + trie_size > len(blob):
            raise ValueError(f"precompiled_charsmap: bad trie size {trie_size}")
        self.units = struct.unpack_from(f"<{trie_size // 4}I", blob, 4)
        self.strings = blob[4 + trie_size:]

    def longest_prefix(self, key, start):
        """(replacement bytes, matched length) for key[start:], or None."""
        units, pos, best = self.units, 0, None
        unit = units[0]
        pos ^= (unit >> 10) << ((unit & (1 << 9)) >> 6)               # offset()
        for i in range(start, len(key)):
            pos ^= key[i]
            if pos >= len(units):
                break
            unit = units[pos]
            if (unit & ((1 << 31) | 0xFF)) != key[i]:                 # label() mismatch
                break
            pos ^= (unit >> 10) << ((unit & (1 << 9)) >> 6)
            if (unit >> 8) & 1:                                        # has_leaf(): value at pos
                value = units[pos] & ((1 << 31) - 1)
                best = (value, i + 1 - start)
        if best is None:
            return None
        value, length = best
        end = self.strings.index(b"\x00", value) if b"\x00" in self.strings[value:] else len(self.strings)
        return self.strings[value:end], length


def normalize(text, charsmap=None, add_dummy_prefix=True, remove_extra_whitespaces=True,
              escape_whitespaces=True, treat_whitespace_as_suffix=False):
    """SentencePiece's Normalizer::Normalize (normalizer.cc), step for step, on a str."""
    data = text.encode("utf-8")
    pos = 0

    def prefix():  # (normalized piece, bytes consumed) at pos: charsmap match, else one character
        if charsmap is not None:
            hit = charsmap.longest_prefix(data, pos)
            if hit is not None:
                return hit[0].decode("utf-8", errors="replace"), hit[1]
        n = 1 if data[pos] < 0x80 else 2 if data[pos] < 0xE0 else 3 if data[pos] < 0xF0 else 4
        return data[pos:pos + n].decode("utf-8"), n

    if remove_extra_whitespaces:  # drop leading spaces
        while pos < len(data):
            piece, n = prefix()
            if piece != " ":
                break
            pos += n
    if pos >= len(data):
        return ""
    space = SPACE if escape_whitespaces else " "
    out = []
    if add_dummy_prefix and not treat_whitespace_as_suffix:
        out.append(space)
    is_prev_space = remove_extra_whitespaces
    while pos < len(data):
        piece, n = prefix()
        while is_prev_space and piece.startswith(" "):  # collapse runs of spaces
            piece = piece[1:]
        if piece:
            out.append(piece.replace(" ", SPACE) if escape_whitespaces else piece)
            is_prev_space = piece.endswith(" ")
        pos += n
        is_prev_space = is_prev_space and remove_extra_whitespaces
    if add_dummy_prefix and treat_whitespace_as_suffix:
        out.append(space)
    result = "".join(out)
    if remove_extra_whitespaces:  # drop trailing spaces (written as "▁" if escaped)
        while result.endswith(space):
            result = result[: -len(space)]
    return result


def parse_model(data):
    """ModelProto bytes -> (pieces [(str, float, int)], settings dict for UnigramTokenizer)."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"data: expected bytes, got {type(data).__name__}")
    model = parse_message(bytes(data))
    if 1 not in model:
        raise ValueError("no pieces (field 1) in the model")
    # the pieces come first, then trainer_spec and normalizer_spec (every spm_train output has both):
    # a file cut at a record boundary parses, so their absence is how a truncation shows
    if 2 not in model or 3 not in model:
        raise ValueError("no trainer_spec (field 2) or normalizer_spec (field 3): truncated?")
    pieces = []
    for raw in model[1]:
        if not isinstance(raw, bytes):
            raise ValueError("field 1 (a piece): expected a sub-message, got a varint")
        sp = parse_message(raw)
        piece = _get(sp, 1, b"").decode("utf-8")
        score = struct.unpack("<f", _get(sp, 2, b"\x00\x00\x00\x00"))[0]
        pieces.append((piece, score, _get(sp, 3, 1)))
    trainer = parse_message(_get(model, 2, b""))
    norm = parse_message(_get(model, 3, b""))
    model_type = _get(trainer, 3, 1)
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type {model_type} (WORD/CHAR) is not supported; only UNIGRAM and BPE")
    charsmap_blob = _get(norm, 2, b"")
    settings = {
        "model_type": MODEL_TYPES[model_type],
        "byte_fallback": bool(_get(trainer, 35, 0)),
        "add_dummy_prefix": bool(_get(norm, 3, 1)),
        "remove_extra_whitespaces": bool(_get(norm, 4, 1)),
        "escape_whitespaces": bool(_get(norm, 5, 1)),
        "treat_whitespace_as_suffix": bool(_get(trainer, 24, 0)),
        "charsmap": CharsMap(charsmap_blob) if charsmap_blob else None,
    }
    return pieces, settings


def load(cls, data, name="model"):
    try:
        pieces, settings = parse_model(data)
    except (ValueError, UnicodeDecodeError, struct.error) as e:
        raise ValueError(f"{name}: not a SentencePiece model or a minillm Unigram file ({e})") from None
    return cls(pieces, **settings)
