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
