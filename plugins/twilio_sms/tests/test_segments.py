"""GSM-7/UCS-2 detection, segment counting and Smart Encoding (facts §7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from messaging_twilio_sms.segments import Encoding, SegmentInfo, count_segments, is_gsm7, smart_encode

GSM7_BASIC = (
    "\n\r !\"#$%&'()*+,-./0123456789:;<=>?@"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
    "¡£¤¥§¿ÄÅÆÉÑÖØÜßàäåæÇèéìñòöøùü"
    "\u0393\u0394\u0398\u039b\u039e\u03a0\u03a3\u03a6\u03a8\u03a9"
)
GSM7_EXTENSION = "\f[\\]^{|}~\u20ac"
EMOJI = "\U0001f600"  # one code point, a surrogate pair in UTF-16
CYRILLIC = "\u0436"  # one UCS-2 code unit


@pytest.mark.parametrize(
    ("text", "encoding", "segments", "code_units"),
    [
        pytest.param("", "GSM-7", 0, 0, id="empty"),
        pytest.param("a" * 160, "GSM-7", 1, 160, id="160-gsm"),
        pytest.param("a" * 161, "GSM-7", 2, 161, id="161-gsm"),
        pytest.param("a" * 306, "GSM-7", 2, 306, id="306-gsm"),
        pytest.param("a" * 307, "GSM-7", 3, 307, id="307-gsm"),
        pytest.param("a" * 1600, "GSM-7", 11, 1600, id="1600-gsm"),
        pytest.param(CYRILLIC * 70, "UCS-2", 1, 70, id="70-ucs2"),
        pytest.param(CYRILLIC * 71, "UCS-2", 2, 71, id="71-ucs2"),
        pytest.param(CYRILLIC * 134, "UCS-2", 2, 134, id="134-ucs2"),
        pytest.param(CYRILLIC * 135, "UCS-2", 3, 135, id="135-ucs2"),
        pytest.param(CYRILLIC * 1600, "UCS-2", 24, 1600, id="1600-ucs2"),
        # Extension characters take two septets.
        pytest.param("\u20ac" * 80, "GSM-7", 1, 160, id="80-euro-fill-one-segment"),
        pytest.param("\u20ac" * 81, "GSM-7", 2, 162, id="81-euro-need-two"),
        pytest.param("a" * 159 + "[", "GSM-7", 2, 161, id="extension-pushes-past-160"),
        pytest.param("{}" * 153, "GSM-7", 5, 612, id="76-extensions-per-segment"),
        # 306 septets fit 2 x 153 by division, but the euro at septets 153-154 moves whole to segment 2,
        # which then overflows into a third.
        pytest.param("a" * 152 + "\u20ac" + "a" * 152, "GSM-7", 3, 306, id="extension-at-boundary"),
        pytest.param("a" * 151 + "\u20ac" + "a" * 153, "GSM-7", 2, 306, id="extension-just-fits"),
        # Surrogate pairs take two code units and are never split either.
        pytest.param(EMOJI * 35, "UCS-2", 1, 70, id="35-emoji-one-segment"),
        pytest.param(EMOJI * 36, "UCS-2", 2, 72, id="36-emoji-33-per-segment"),
        pytest.param(CYRILLIC * 66 + EMOJI + CYRILLIC * 66, "UCS-2", 3, 134, id="emoji-at-boundary"),
        pytest.param(CYRILLIC * 65 + EMOJI + CYRILLIC * 67, "UCS-2", 2, 134, id="emoji-just-fits"),
        # One non-GSM character makes the whole message UCS-2.
        pytest.param("a" * 100 + EMOJI, "UCS-2", 2, 102, id="emoji-switches-to-ucs2"),
        pytest.param("a`b", "UCS-2", 1, 3, id="backtick-is-not-gsm7"),
        pytest.param("\u00e7a va", "UCS-2", 1, 5, id="lowercase-c-cedilla-is-not-gsm7"),
        pytest.param("\u00c7A VA", "GSM-7", 1, 5, id="uppercase-c-cedilla-is-gsm7"),
        pytest.param("\u03b1", "UCS-2", 1, 1, id="greek-lowercase-is-not-gsm7"),
        pytest.param("\x1b", "UCS-2", 1, 1, id="escape-is-not-a-character"),
    ],
)
def test_count_segments(text: str, encoding: Encoding, segments: int, code_units: int) -> None:
    info = count_segments(text)
    assert info == SegmentInfo(encoding, segments, len(text), code_units, text)


# Supplementary characters at the edges of the surrogate ranges, as (high, low) code units. The cut
# test reads the first byte of each unit: 0xD8-0xDB for a high surrogate, 0xDC-0xDF for a low one.
# U+1F400-U+1F4FF (animals, objects) are the emoji whose low surrogate starts with 0xDC.
EDGE_PAIRS = {
    "\U00010000": "D800 DC00 (first supplementary character)",
    "\U0001f400": "D83D DC00 (first emoji whose low surrogate starts with 0xDC)",
    "\U0001f4ff": "D83D DCFF (last emoji whose low surrogate starts with 0xDC)",
    "\U0001f7ff": "D83D DFFF (a low surrogate starting with 0xDF)",
    "\U000f0000": "DB80 DC00 (a high surrogate starting with 0xDB)",
    "\U0010ffff": "DBFF DFFF (last code point)",
}


@pytest.mark.parametrize("pair", list(EDGE_PAIRS), ids=list(EDGE_PAIRS.values()))
def test_a_pair_straddling_the_cut_moves_back_exactly_one_unit(pair: str) -> None:
    # The pair would take units 66-67, across the 67-unit cut: it starts segment 2, which then
    # holds units 66-132 and the rest spills into a third segment.
    assert count_segments(CYRILLIC * 66 + pair + CYRILLIC * 66).segments == 3
    # One unit less after it, and segment 2 ends exactly at the last unit: a move-back of two
    # units (or none) would need a third segment here.
    assert count_segments(CYRILLIC * 66 + pair + CYRILLIC * 65).segments == 2
    # The pair right before the cut fits whole: no move-back.
    assert count_segments(CYRILLIC * 65 + pair + CYRILLIC * 67).segments == 2


@pytest.mark.parametrize(
    "units",
    [
        pytest.param("\ud83d" + CYRILLIC, id="lone-high-surrogate-then-a-letter"),
        pytest.param("\udc00\udc00", id="two-lone-low-surrogates"),
        pytest.param("\ud800\ue000", id="lone-high-surrogate-then-private-use"),
    ],
)
def test_only_a_real_surrogate_pair_moves_the_cut(units: str) -> None:
    """Lone surrogates count as the one code unit each is; two units that are no pair are cut apart."""
    text = CYRILLIC * 66 + units + CYRILLIC * 66
    info = count_segments(text)
    assert (info.encoding, info.code_units, info.segments) == ("UCS-2", 134, 2)


def test_a_lone_high_surrogate_at_the_very_end() -> None:
    # The cut after it is the end of the text: there is no next unit to look at.
    assert count_segments(CYRILLIC * 133 + "\ud800").segments == 2


@pytest.mark.parametrize("text", [CYRILLIC * 71, EMOJI * 36, "\ud800"], ids=["bmp", "pairs", "lone-surrogate"])
def test_ucs2_code_units_are_an_integer(text: str) -> None:
    info = count_segments(text)
    assert type(info.code_units) is int  # a count, written as 72 (not 72.0) wherever it is shown


@pytest.mark.parametrize("char", GSM7_BASIC)
def test_basic_set_is_one_septet(char: str) -> None:
    assert is_gsm7(char)
    assert count_segments(char).code_units == 1


@pytest.mark.parametrize("char", GSM7_EXTENSION)
def test_extension_table_is_two_septets(char: str) -> None:
    info = count_segments(char)
    assert (info.encoding, info.characters, info.code_units) == ("GSM-7", 1, 2)


def test_gsm7_has_127_basic_and_10_extension_characters() -> None:
    latin1_and_greek = [chr(code) for code in [*range(0x250), *range(0x370, 0x400), 0x20AC]]
    assert sum(map(is_gsm7, latin1_and_greek)) == 127 + 10


def test_smart_encoding_turns_curly_quotes_into_gsm7() -> None:
    text = "\u201cHello\u201d \u2013 it\u2019s \u00bd price\u2026"
    assert count_segments(text).encoding == "UCS-2"

    info = count_segments(text, smart_encoded=True)

    assert info == SegmentInfo("GSM-7", 1, 27, 27, '"Hello" - it\'s 1/2 price...')


def test_smart_encoding_replaces_the_backtick() -> None:
    assert count_segments("a`b", smart_encoded=True) == SegmentInfo("GSM-7", 1, 3, 3, "a'b")


def test_smart_encoding_keeps_what_has_no_replacement() -> None:
    info = count_segments("\u201cHi\u201d " + EMOJI, smart_encoded=True)
    assert info == SegmentInfo("UCS-2", 1, 6, 7, '"Hi" ' + EMOJI)


@pytest.mark.parametrize(
    ("char", "replacement"),
    [
        ("\u00ab", '"'),
        ("\u00bb", '"'),
        ("\u201c", '"'),
        ("\u201d", '"'),
        ("\u201e", '"'),
        ("\u301e", '"'),
        ("\u2018", "'"),
        ("\u2019", "'"),
        ("\u02bc", "'"),
        ("\u00b4", "'"),
        ("`", "'"),
        ("\u2010", "-"),
        ("\u2013", "-"),
        ("\u2014", "-"),
        ("\u2015", "-"),
        ("\u2022", "-"),
        ("\u2026", "..."),
        ("\u203c", "!!"),
        ("\u00bc", "1/4"),
        ("\u00bd", "1/2"),
        ("\u00be", "3/4"),
        ("\u00f7", "/"),
        ("\u2044", "/"),
        ("\uff01", "!"),
        ("\uff21", "A"),
        ("\uff41", "a"),
        ("\uff5b", "{"),
        ("\uff5e", "~"),
        ("\u00a0", " "),
        ("\u2002", " "),
        ("\u2003", " "),
        ("\u2028", " "),
        ("\u3000", " "),
        ("\t", " "),
        ("\u200b", ""),
        ("\u2060", ""),
        ("\ufeff", ""),
        ("\x00", ""),
    ],
)
def test_smart_encode_table(char: str, replacement: str) -> None:
    assert smart_encode(f"a{char}b") == f"a{replacement}b"
    assert smart_encode(f"\u00e9{char}\u00e9") == f"\u00e9{replacement}\u00e9"  # non-ASCII path


def test_smart_encode_maps_the_whole_fullwidth_block_to_gsm7() -> None:
    fullwidth = "".join(map(chr, range(0xFF01, 0xFF5F)))
    assert is_gsm7(smart_encode(fullwidth))


@pytest.mark.parametrize("char", ["\uff00", "\uff5f"], ids=["before-U+FF01", "after-U+FF5E"])
def test_smart_encode_keeps_the_neighbours_of_the_fullwidth_block(char: str) -> None:
    # U+FF5F FULLWIDTH LEFT WHITE PARENTHESIS is no shifted ASCII character (it would become DEL).
    assert smart_encode(char) == char
    assert count_segments(char, smart_encoded=True).encoding == "UCS-2"


def test_smart_encode_leaves_gsm7_alone() -> None:
    assert smart_encode(GSM7_BASIC + GSM7_EXTENSION) == GSM7_BASIC + GSM7_EXTENSION


def reference_segments(text: str) -> int:
    """Count segments the slow, obvious way: one character at a time (facts §7)."""
    gsm7 = all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)
    single, multi = (160, 153) if gsm7 else (70, 67)
    widths = [(2 if char in GSM7_EXTENSION else 1) if gsm7 else (2 if ord(char) > 0xFFFF else 1) for char in text]
    if sum(widths) <= single:
        return 1 if widths else 0
    segments, used = 1, 0
    for width in widths:
        if used + width > multi:
            segments, used = segments + 1, 0
        used += width
    return segments


texts = st.text(
    alphabet=st.sampled_from(["a", " ", "\u00e9", "\u20ac", "[", "`", CYRILLIC, EMOJI, "\u201c", "\u2026"])
    | st.characters(exclude_categories=["Cs"]),
    max_size=500,
)


@given(texts)
def test_segments_match_a_character_by_character_walk(text: str) -> None:
    assert count_segments(text).segments == reference_segments(text)


@given(texts, st.characters(exclude_categories=["Cs"]))
def test_appending_a_character_never_reduces_segments(text: str, char: str) -> None:
    assert count_segments(text + char).segments >= count_segments(text).segments


@given(texts)
def test_encoding_is_gsm7_iff_is_gsm7(text: str) -> None:
    info = count_segments(text)
    assert (info.encoding == "GSM-7") == is_gsm7(text)
    if info.encoding == "GSM-7":
        assert info.code_units == len(text) + sum(char in GSM7_EXTENSION for char in text)
    else:
        assert info.code_units == len(text.encode("utf-16-le")) // 2


@given(texts)
def test_smart_encoding_is_idempotent_and_reported(text: str) -> None:
    encoded = smart_encode(text)
    assert smart_encode(encoded) == encoded
    assert count_segments(text, smart_encoded=True).text == encoded
