"""GSM-7/UCS-2 encoding detection, SMS segment counting and Twilio Smart Encoding.

Pure functions, no I/O. They reproduce what Twilio bills: a message is GSM-7 when every character is in
the GSM 03.38 basic set or its extension table, otherwise the *whole* message is UCS-2. A single segment
holds 160 septets (GSM-7) or 70 UTF-16 code units (UCS-2); once a second segment is needed every segment
carries a 6-octet User Data Header, leaving 153 septets or 67 code units, and a character is never split
across two segments (an extension character, 2 septets, or a surrogate pair, 2 code units, that does not
fit moves whole to the next segment).

Smart Encoding (``SmartEncoded=true`` or the Messaging Service setting) replaces look-alike Unicode
characters (curly quotes, dashes, fullwidth forms, Unicode spaces...) by GSM-7 ones before encoding.
The table follows Twilio's published list and the machine-readable copy in Twilio's segment calculator,
with the deviations noted next to the entries.

``count_segments`` runs once per message in bulk sends: every table is built at import time, and pure
ASCII text (the common case) is classified through ``str.translate``, which CPython runs in C for ASCII.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, Literal

from attrs import frozen

__all__ = ["Encoding", "SegmentInfo", "count_segments", "is_gsm7", "smart_encode"]

Encoding = Literal["GSM-7", "UCS-2"]

# Capacity per segment, in septets (GSM-7) or UTF-16 code units (UCS-2).
_GSM7_SINGLE_SEGMENT: Final = 160
_GSM7_MULTI_SEGMENT: Final = 153
_UCS2_SINGLE_SEGMENT: Final = 70
_UCS2_MULTI_SEGMENT: Final = 67

# GSM 03.38 basic character set (127 characters; ESC 0x1B is not a character). Greek capitals are
# escaped so that look-alike Latin letters cannot slip in.
_GSM7_BASIC_CHARS: Final = (
    "\n\r !\"#$%&'()*+,-./0123456789:;<=>?@"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
    "¡£¤¥§¿ÄÅÆÉÑÖØÜßàäåæÇèéìñòöøùü"
    "\u0393\u0394\u0398\u039b\u039e\u03a0\u03a3\u03a6\u03a8\u03a9"  # ΓΔΘΛΞΠΣΦΨΩ
)
# Extension table: sent as ESC + byte, so each counts as 2 septets. The backtick is *not* GSM-7.
_GSM7_EXTENSION_CHARS: Final = "\f[\\]^{|}~\u20ac"

_GSM7_BASIC: Final = frozenset(_GSM7_BASIC_CHARS)
_GSM7_EXTENSION: Final = frozenset(_GSM7_EXTENSION_CHARS)
_GSM7: Final = _GSM7_BASIC | _GSM7_EXTENSION
# Deletes the basic set: what is left of a GSM-7 text are its extension characters.
_DROP_GSM7_BASIC: Final = str.maketrans(dict.fromkeys(_GSM7_BASIC_CHARS))
_GSM7_EXTENSION_RE: Final = re.compile("[" + re.escape(_GSM7_EXTENSION_CHARS) + "]")

# Smart Encoding, grouped by replacement: {replacement: characters replaced by it}.
_SMART_ENCODING_GROUPS: Final[dict[str, str]] = {
    # Double quotes: curly, angle, primes, ornaments.
    '"': "\u00ab\u00bb\u02ba\u02ee\u201c\u201d\u201e\u201f\u275d\u275e\u301d\u301e",
    # Single quotes, primes and accents (the backtick and the fullwidth grave accent too, since the
    # backtick itself is not GSM-7). U+2017 DOUBLE LOW LINE is in Twilio's calculator table.
    "'": (
        "`\u00b4\u02b9\u02bb\u02bc\u02bd\u02c8\u02ca\u02cb\u0313\u0314"
        "\u2017\u2018\u2019\u201b\u275b\u275c\ufe10\ufe11\uff40"
    ),
    # Dashes, hyphens, horizontal bars and the bullet.
    "-": "\u2010\u2013\u2014\u2015\u2022\u2043\u23bc\u23bd\ufe63",
    "...": "\u2026",  # horizontal ellipsis
    "!!": "\u203c",  # double exclamation mark
    "1/4": "\u00bc",
    "1/2": "\u00bd",
    "3/4": "\u00be",
    "/": "\u00f7\u0337\u0338\u2044\u2215\u29f8",  # division sign and slash variants
    "\\": "\u20e5\u29f5\u29f9\ufe68",
    "_": "\u0332",
    "|": "\u20d2\u20d3\u2223\u239c\u239f\u23b8\u23b9\u23d0",
    "!": "\u01c3\ufe15\ufe57",
    "#": "\ufe5f",
    "$": "\ufe69",
    "%": "\ufe6a",
    "&": "\ufe60",
    "@": "\ufe6b",
    ",": "\u0326\u201a\u3001\ufe50\ufe51\uff64",
    ".": "\u3002\ufe52\uff61",
    ":": "\u02d0\u02f8\u2982\ua789\ufe13",
    ";": "\u204f\ufe14\ufe54",
    "?": "\ufe16\ufe56",
    "+": "\u02d6\ufe62",
    "=": "\u0347\ua78a\ufe66",
    # Single angle quotation marks: Twilio's calculator maps U+2039 to ">" and U+203A to "<"; the
    # direction is unverified, so they map to the look-alike (the septet count is the same).
    "<": "\u2039\ufe64",
    ">": "\u203a\ufe65",
    "(": "\u2768\u276a\u27ee\u2985\ufe59",
    ")": "\u2769\u276b\u27ef\u2986\ufe5a",
    "*": (
        "\u204e\u2217\u229b\u2722\u2723\u2724\u2725\u2731\u2732\u2733\u273a"
        "\u273b\u273c\u273d\u2743\u2749\u274a\u274b\u29c6\ufe61"
    ),
    "^": "\u02c6\u0302\u1dcd",
    "~": "\u02dc\u02f7\u0303\u0330\u0334\u223c",
    "{": "\u2774\ufe5b",
    "}": "\u2775\ufe5c",
    # Latin letter small capitals (there is none for Q and X).
    "A": "\u1d00",
    "B": "\u0299",
    "C": "\u1d04",
    "D": "\u1d05",
    "E": "\u1d07",
    "F": "\ua730",
    "G": "\u0262",
    "H": "\u029c",
    "I": "\u026a",
    "J": "\u1d0a",
    "K": "\u1d0b",
    "L": "\u029f",
    "M": "\u1d0d",
    "N": "\u0274",
    "O": "\u1d0f",
    "P": "\u1d18",
    "R": "\u0280",
    "S": "\ua731",
    "T": "\u1d1b",
    "U": "\u1d1c",
    "V": "\u1d20",
    "W": "\u1d21",
    "Y": "\u028f",
    "Z": "\u1d22",
    # Unicode spaces, TAB and the C1 controls that render as blanks. Twilio's calculator turns most of
    # them into *two* spaces and TAB into seven; Twilio's list only says "space", so one space each.
    " ": (
        "\t\u0080\u008d\u0090\u009b\u009f\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
        "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
    ),
    # Removed: invisible C0 controls, zero-width space, word joiner, zero-width no-break space (BOM).
    "": "\x00\x03\x04\x10\x11\x12\x13\x14\x17\x19\u200b\u2060\ufeff",
}

# The str.translate table: the fullwidth forms U+FF01-U+FF5E, which are ASCII shifted by 0xFEE0, then
# the groups, which win over them (U+FF40 FULLWIDTH GRAVE ACCENT becomes "'", as the backtick is not
# GSM-7).
_SMART_ENCODING: Final[dict[int, str]] = {code: chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)} | {
    ord(char): replacement for replacement, characters in _SMART_ENCODING_GROUPS.items() for char in characters
}
_SMART_ENCODING_RE: Final = re.compile("[" + re.escape("".join(map(chr, _SMART_ENCODING))) + "]")
# For ASCII text. Identity entries keep str.translate on its C fast path for ASCII, where a character
# missing from the table would cost a KeyError.
_SMART_ENCODING_ASCII: Final = {code: chr(code) for code in range(128)} | {
    code: replacement for code, replacement in _SMART_ENCODING.items() if code < 128
}

# Escape septet that precedes every extension character in the GSM-7 stream.
_ESC: Final = "\x1b"


@frozen
class SegmentInfo:
    """How Twilio encodes and splits one SMS body.

    Built by :func:`count_segments`; ``text`` is the body as it will be sent, after Smart Encoding when
    it was requested.
    """

    encoding: Encoding
    """``"GSM-7"`` when every character is GSM-7, else ``"UCS-2"`` for the whole message."""
    segments: int
    """Number of SMS segments billed (0 for an empty text)."""
    characters: int
    """User-visible characters: code points of ``text``."""
    code_units: int
    """Septets for GSM-7 (extension characters count 2), UTF-16 code units for UCS-2."""
    text: str
    """The text as it will be sent (after Smart Encoding, if enabled)."""


def smart_encode(text: str) -> str:
    """Apply Twilio Smart Encoding: replace look-alike Unicode characters by GSM-7 ones.

    Characters without a replacement (emoji, non-Latin scripts...) are kept, so the result may still
    need UCS-2. Some replacements are longer than the original (``\u2026`` becomes ``...``) and
    invisible characters are removed.
    """
    if text.isascii():
        return text.translate(_SMART_ENCODING_ASCII)
    # Non-ASCII text would leave translate's fast path: replace each distinct character found instead
    # (usually a few curly quotes and dashes). No replacement contains a replaced character, so the
    # order of the replacements does not matter.
    for char in set(_SMART_ENCODING_RE.findall(text)):
        text = text.replace(char, _SMART_ENCODING[ord(char)])
    return text


def is_gsm7(text: str) -> bool:
    """Tell whether ``text`` can be sent in GSM-7 (basic set and extension table only).

    One character outside GSM-7 (an emoji, a curly quote, a backtick) makes the whole message UCS-2.
    """
    return _gsm7_extensions(text) is not None


def count_segments(text: str, smart_encoded: bool = False) -> SegmentInfo:
    """Count the SMS segments Twilio bills for ``text``.

    With ``smart_encoded=True`` the text goes through :func:`smart_encode` first, as Twilio does for
    ``SmartEncoded=true``. A multipart message is cut into 153 septets or 67 code units per segment, and
    a cut that would split a two-unit character (GSM-7 extension character, surrogate pair) moves back
    by one unit so that the character goes whole to the next segment.
    """
    if smart_encoded:
        text = smart_encode(text)
    extensions = _gsm7_extensions(text)
    if extensions is not None:
        septets = len(text) + len(extensions)
        segments = _gsm7_segments(text, septets, extensions)
        return SegmentInfo("GSM-7", segments, len(text), septets, text)
    # "surrogatepass": a lone surrogate counts as the one code unit it is instead of raising.
    utf16 = text.encode("utf-16-le", "surrogatepass")
    code_units = len(utf16) // 2
    return SegmentInfo("UCS-2", _ucs2_segments(utf16, code_units), len(text), code_units, text)


def _gsm7_extensions(text: str) -> str | None:
    """Return the extension characters of ``text`` in order, or None if it is not GSM-7."""
    if text.isascii():
        # Bulk-send bodies are mostly ASCII, which CPython translates in C: cheaper than a set scan.
        rest = text.translate(_DROP_GSM7_BASIC)
        return rest if _GSM7_EXTENSION.issuperset(rest) else None
    # Stops at the first non-GSM character, so UCS-2 texts are rejected early.
    if not _GSM7.issuperset(text):
        return None
    return "".join(_GSM7_EXTENSION_RE.findall(text))


def _gsm7_segments(text: str, septets: int, extensions: str) -> int:
    """Count the GSM-7 segments of ``text``, which is ``septets`` long and has ``extensions``."""
    if septets <= _GSM7_SINGLE_SEGMENT:
        return 1 if septets else 0
    # Spell the text as its septet stream: ESC never occurs in GSM-7 text, so it marks the first half
    # of an extension character.
    stream = text
    for char in set(extensions):
        stream = stream.replace(char, _ESC + char)
    return _count_parts(septets, _GSM7_MULTI_SEGMENT, lambda septet: stream[septet] == _ESC)


def _ucs2_segments(utf16: bytes, code_units: int) -> int:
    """Count the UCS-2 segments of the UTF-16-LE encoded ``utf16``."""
    if code_units <= _UCS2_SINGLE_SEGMENT:
        return 1  # never 0: the empty text is GSM-7

    def starts_surrogate_pair(unit: int) -> bool:
        # Little-endian: the high byte of unit i is utf16[2 * i + 1].
        return 0xD8 <= utf16[2 * unit + 1] <= 0xDB and 0xDC <= utf16[2 * unit + 3] <= 0xDF

    return _count_parts(code_units, _UCS2_MULTI_SEGMENT, starts_surrogate_pair)


def _count_parts(units: int, per_segment: int, starts_pair: Callable[[int], bool]) -> int:
    """Cut ``units`` code units into segments of at most ``per_segment`` and count them.

    ``starts_pair(i)`` tells whether unit ``i`` is the first half of a two-unit character; a cut right
    after it moves back one unit, so the character goes whole to the next segment.
    """
    segments = 0
    start = 0
    while start < units:
        end = start + per_segment
        if end < units and starts_pair(end - 1):
            end -= 1
        segments += 1
        start = end
    return segments
