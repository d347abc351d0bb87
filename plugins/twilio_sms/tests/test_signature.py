"""X-Twilio-Signature: every test vector of facts §5 (Twilio's Python and Node SDK suites), plus fuzzing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict, MultiDictProxy

from messaging_twilio_sms.webhooks import (
    SIGNATURE_HEADER,
    Params,
    SignatureValidator,
    body_sha256,
    compute_signature,
    validate_signature,
)

TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
DUPLICATES = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234"), ("Digits", "1234")]
BODY = b'{"property": "value", "boolean": true}'
BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
EMPTY_BODY = b"{}"
EMPTY_BODY_HASH = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
BINDINGS = ["+1325xxxxxxx", "+1415xxxxxxx"]


def test_header_name() -> None:
    assert SIGNATURE_HEADER == "X-Twilio-Signature"


@pytest.mark.parametrize(
    ("url", "params", "signature"),
    [
        pytest.param(URL, PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", id="base"),
        pytest.param(
            "https://mycompany.com:443/myapp.php?foo=1&bar=2", PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w=", id="https-443"
        ),
        pytest.param(
            "http://mycompany.com:80/myapp.php?foo=1&bar=2", PARAMS, "0ZXoZLH/DfblKGATFgpif+LLRf4=", id="http-80"
        ),
        pytest.param(
            "http://mycompany.com:1234/myapp.php?foo=1&bar=2", PARAMS, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", id="http-1234"
        ),
        pytest.param(URL, DUPLICATES, "IK+Dwps556ElfBT0I3Rgjkr1wJU=", id="duplicates"),
        pytest.param(f"{URL}&bodySHA256={BODY_HASH}", None, "a9nBmqA0ju/hNViExpshrM61xv4=", id="json-body"),
        pytest.param(
            f"https://mycompany.com/myapp.php?bodySHA256={BODY_HASH}",
            None,
            "y77kIzt2vzLz71DgmJGsen2scGs=",
            id="json-body-no-other-query",
        ),
        pytest.param(
            f"https://mycompany.com:443/myapp.php?foo=1&bar=2&bodySHA256={EMPTY_BODY_HASH}",
            None,
            "Ldidvp12m26NI7eqEvxnEpkd9Hc=",
            id="empty-json-body-443",
        ),
        pytest.param(
            "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
            PARAMS,
            "CukzLTc1tT5dXEDIHm/tKBanW10=",
            id="userinfo",
        ),
        pytest.param(
            "https://user@mycompany.com/myapp.php?foo=1&bar=2", PARAMS, "2YRLlVAflCqxaNicjMpJcSTgzSs=", id="username"
        ),
        pytest.param(
            "https://user:pass@mycompany.com:443/myapp.php?foo=1&bar=2",
            PARAMS,
            "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI=",
            id="userinfo-443",
        ),
        pytest.param(f"{URL}&Body=It%27s+amazing", PARAMS, "TfZzewPq8wqrGlMfyAud8+/IvJ0=", id="quote-escaped"),
        pytest.param(f"{URL}&Body=It's+amazing", PARAMS, "dsq4Ehbj6cs+KdTkpF5sSSplOWw=", id="quote-literal"),
        pytest.param(URL, {"MessagingBinding.Address": BINDINGS}, "83O6e2vORAoJHUNzJjDWN1jz+BA=", id="list-values"),
        pytest.param(
            URL,
            {"MessagingBinding.Address": BINDINGS[::-1]},
            "83O6e2vORAoJHUNzJjDWN1jz+BA=",
            id="list-values-any-order",
        ),
        pytest.param(
            "http://mycompany.com/myapp.php?foo=1&bar=2", PARAMS, "OyGYPqTF6ztdbRNCvuQO/oPvqQ4=", id="http-no-port"
        ),
        pytest.param(
            "https://mycompany.com:1234/myapp.php?foo=1&bar=2", PARAMS, "CYn1h0gLBdNxDGkKJg6hYohgeD8=", id="https-1234"
        ),
    ],
)
def test_vectors(url: str, params: Params | None, signature: str) -> None:
    assert compute_signature(TOKEN, url, params) == signature
    assert SignatureValidator(TOKEN).compute(url, params) == signature
    body = BODY if BODY_HASH in url else EMPTY_BODY if EMPTY_BODY_HASH in url else None
    assert validate_signature(TOKEN, url, params, signature, body=body)


@pytest.mark.parametrize(
    ("request_url", "signature"),
    [
        # Twilio signed the URL with the default port; the request URL has none (adds_port_on_*).
        pytest.param(URL, "kvajT1Ptam85bY51eRf/AJRuM3w=", id="adds-443"),
        pytest.param("http://mycompany.com/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4=", id="adds-80"),
        # Twilio signed without the port the request URL has (removes_port_on_*), any port.
        pytest.param(
            "https://mycompany.com:1234/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", id="drops-1234"
        ),
        pytest.param("https://mycompany.com:443/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", id="drops-443"),
        pytest.param(
            "http://mycompany.com:1234/myapp.php?foo=1&bar=2", "OyGYPqTF6ztdbRNCvuQO/oPvqQ4=", id="http-drops"
        ),
        # Userinfo is kept while the port changes.
        pytest.param(
            "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
            "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI=",
            id="userinfo-adds-443",
        ),
        pytest.param(
            "https://user:pass@mycompany.com:443/myapp.php?foo=1&bar=2",
            "CukzLTc1tT5dXEDIHm/tKBanW10=",
            id="userinfo-drops-443",
        ),
    ],
)
def test_port_variants_validate(request_url: str, signature: str) -> None:
    assert validate_signature(TOKEN, request_url, PARAMS, signature)


@pytest.mark.parametrize(
    ("signed_url", "request_url"),
    [
        # The port is found after the scheme's "//", not after a later "//" of the path or query.
        pytest.param(
            "https://example.com/a//b?next=https://x.example//y",
            "https://example.com:443/a//b?next=https://x.example//y",
            id="later-slashes-add",
        ),
        pytest.param(
            "https://example.com:443/a//b?next=https://x.example//y",
            "https://example.com/a//b?next=https://x.example//y",
            id="later-slashes-drop",
        ),
        # IPv6 literals: the port is what follows the closing bracket; the address keeps its colons.
        pytest.param("https://[2001:db8::1]/sms", "https://[2001:db8::1]:443/sms", id="ipv6-adds-443"),
        pytest.param("https://[2001:db8::1]:443/sms", "https://[2001:db8::1]/sms", id="ipv6-drops-443"),
        pytest.param("http://[::1]/sms?x=1", "http://[::1]:8080/sms?x=1", id="ipv6-drops-8080"),
        pytest.param("https://user:pw@[::1]/sms", "https://user:pw@[::1]:443/sms", id="ipv6-userinfo-adds-443"),
    ],
)
def test_port_variants_of_unusual_urls(signed_url: str, request_url: str) -> None:
    signature = compute_signature(TOKEN, signed_url, PARAMS)
    assert validate_signature(TOKEN, request_url, PARAMS, signature)
    assert not validate_signature(TOKEN, request_url, PARAMS, compute_signature(TOKEN, signed_url + "x", PARAMS))


def test_the_url_as_given_is_checked_before_it_is_parsed() -> None:
    # urlsplit refuses an unclosed IPv6 bracket; a signature over the URL exactly as given still holds.
    url = "https://[::1/sms"
    assert validate_signature(TOKEN, url, PARAMS, compute_signature(TOKEN, url, PARAMS))
    assert SignatureValidator(TOKEN).refusal(url, PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=") == (
        "the request's URL or fields are malformed; its signature cannot be checked"
    )


def test_a_url_that_parsing_would_clean_up_has_no_port_variant() -> None:
    """A tab in the host (``urlsplit`` drops it): only a signature over the URL exactly as given holds.

    No variant is built from the cleaned-up host, neither a clean one nor one spliced into the
    original text at the cleaned-up host's length.
    """
    url = "https://exa\tmple.com/sms"
    assert validate_signature(TOKEN, url, PARAMS, compute_signature(TOKEN, url, PARAMS))
    host = "example.com"  # what urlsplit makes of "exa\tmple.com"
    spliced = url[:8] + host + ":443" + url[8 + len(host) :]
    for variant in ("https://example.com:443/sms", spliced):
        assert not validate_signature(TOKEN, url, PARAMS, compute_signature(TOKEN, variant, PARAMS)), variant


def test_other_ports_are_not_tried() -> None:
    assert not validate_signature(TOKEN, URL, PARAMS, "CYn1h0gLBdNxDGkKJg6hYohgeD8=")  # signed for :1234


def test_empty_json_body_matches_only_the_443_variant() -> None:
    url = f"{URL}&bodySHA256={EMPTY_BODY_HASH}"
    assert compute_signature(TOKEN, url) != "Ldidvp12m26NI7eqEvxnEpkd9Hc="
    assert validate_signature(TOKEN, url, None, "Ldidvp12m26NI7eqEvxnEpkd9Hc=", body=EMPTY_BODY)


@pytest.mark.parametrize(
    "make_params",
    [
        # Factories, not values: an iterator built at collection time is used up by the first run.
        pytest.param(lambda: DUPLICATES, id="pairs"),
        pytest.param(lambda: MultiDict(DUPLICATES), id="multidict"),
        pytest.param(lambda: MultiDictProxy(MultiDict(DUPLICATES)), id="multidict-proxy"),
        pytest.param(
            lambda: {"Sid": "CA123", "SidAccount": "AC123", "Digits": ["5678", "1234", "1234"]}, id="dict-of-lists"
        ),
        pytest.param(lambda: iter(DUPLICATES[::-1]), id="iterator"),
    ],
)
def test_duplicates_are_signed_once_and_sorted(make_params: Callable[[], Params]) -> None:
    for _ in range(2):  # a second run in the same process sees fresh parameters
        assert validate_signature(TOKEN, URL, make_params(), "IK+Dwps556ElfBT0I3Rgjkr1wJU=")


def test_form_as_a_multidict_proxy() -> None:
    # What aiohttp's ``await request.post()`` returns.
    assert validate_signature(TOKEN, URL, MultiDictProxy(MultiDict(PARAMS)), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_body_sha256() -> None:
    assert body_sha256(BODY) == BODY_HASH
    assert body_sha256(EMPTY_BODY) == EMPTY_BODY_HASH


class TestJsonBody:
    url = f"{URL}&bodySHA256={BODY_HASH}"
    signature = "a9nBmqA0ju/hNViExpshrM61xv4="

    def test_valid(self) -> None:
        assert validate_signature(TOKEN, self.url, None, self.signature, body=BODY)

    def test_params_are_not_signed(self) -> None:
        assert validate_signature(TOKEN, self.url, PARAMS, self.signature, body=BODY)

    def test_tampered_body_fails(self) -> None:
        assert not validate_signature(TOKEN, self.url, None, self.signature, body=BODY.replace(b"true", b"false"))

    def test_missing_body_fails(self) -> None:
        assert not validate_signature(TOKEN, self.url, None, self.signature)

    def test_hash_of_another_body_fails(self) -> None:
        url = f"{URL}&bodySHA256={EMPTY_BODY_HASH}"
        assert not validate_signature(TOKEN, url, None, self.signature, body=BODY)

    def test_body_without_hash_in_url_is_ignored_for_forms(self) -> None:
        assert validate_signature(TOKEN, URL, PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", body=b"anything")

    def test_body_without_hash_in_url_is_refused(self) -> None:
        """A URL-only signature without ``bodySHA256`` would cover any body: never accepted for one."""
        url_only = compute_signature(TOKEN, URL)
        assert validate_signature(TOKEN, URL, None, url_only)  # GET: no body
        assert not validate_signature(TOKEN, URL, None, url_only, body=BODY)
        assert not validate_signature(TOKEN, URL, None, url_only, body=b"")
        reason = SignatureValidator(TOKEN).refusal(URL, None, url_only, body=BODY)
        assert reason is not None
        assert "bodySHA256" in reason


MISMATCH = (
    "the X-Twilio-Signature does not match this request "
    "(is AuthToken right, and is the URL exactly the public URL Twilio called?)"
)


def _needs_hash(kind: str) -> str:
    return (
        f"a webhook with a {kind} body must be signed with bodySHA256 in its URL query (Twilio adds it); "
        "this URL has none"
    )


@pytest.mark.parametrize(
    ("url", "params", "body", "reason"),
    [
        pytest.param(URL, PARAMS, None, MISMATCH, id="wrong-signature"),
        pytest.param("ftp://example.com/sms", PARAMS, None, MISMATCH, id="no-port-variant"),
        pytest.param(URL, None, BODY, _needs_hash("JSON"), id="json-object-without-hash"),
        pytest.param(URL, None, b"[1]", _needs_hash("JSON"), id="json-array-without-hash"),
        pytest.param(URL, None, b"hello", _needs_hash("non-form"), id="text-without-hash"),
        pytest.param(URL, None, b"", _needs_hash("non-form"), id="empty-without-hash"),
        pytest.param(
            f"{URL}&bodySHA256=",
            None,
            BODY,
            "the body does not match the bodySHA256 it was signed with",
            id="empty-hash",
        ),
        pytest.param(
            "https://example.com:99999/sms",
            PARAMS,
            None,
            "the request's URL or fields are malformed; its signature cannot be checked",
            id="port-out-of-range",
        ),
    ],
)
def test_the_refusal_says_why(url: str, params: Params | None, body: bytes | None, reason: str) -> None:
    assert SignatureValidator(TOKEN).refusal(url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=x", body=body) == reason


@pytest.mark.parametrize(
    ("token", "url", "params", "signature"),
    [
        pytest.param("54321", URL, PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", id="wrong-token"),
        pytest.param(TOKEN, URL + "&baz=3", PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", id="wrong-url"),
        pytest.param(TOKEN, URL.replace("https", "http"), PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", id="wrong-scheme"),
        pytest.param(TOKEN, URL, {**PARAMS, "Digits": "1235"}, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", id="changed-param"),
        pytest.param(TOKEN, URL, {**PARAMS, "Extra": ""}, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", id="added-param"),
        pytest.param(TOKEN, URL, None, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", id="missing-params"),
        pytest.param(TOKEN, URL, PARAMS, None, id="missing-signature"),
        pytest.param(TOKEN, URL, PARAMS, "", id="empty-signature"),
        pytest.param(TOKEN, URL, PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8", id="truncated-signature"),
        pytest.param(TOKEN, URL, PARAMS, " RSOYDt4T1cUTdK1PDd93/VVr8B8=", id="padded-signature"),
        pytest.param(TOKEN, URL, PARAMS, "rsoydt4t1cutdk1pdd93/vvr8b8=", id="case-changed-signature"),
    ],
)
def test_invalid(token: str, url: str, params: Params | None, signature: str | None) -> None:
    assert not validate_signature(token, url, params, signature)
    assert not SignatureValidator(token).validate(url, params, signature)


@pytest.mark.parametrize(
    ("token", "url", "params", "signature", "body"),
    [
        pytest.param(None, URL, PARAMS, "x", None, id="token-none"),
        pytest.param(12345, URL, PARAMS, "x", None, id="token-int"),
        pytest.param("\ud800", URL, PARAMS, "x", None, id="token-lone-surrogate"),
        pytest.param(TOKEN, None, PARAMS, "x", None, id="url-none"),
        pytest.param(TOKEN, b"https://a/", PARAMS, "x", None, id="url-bytes"),
        pytest.param(TOKEN, "http://[::1", PARAMS, "x", None, id="url-bad-ipv6"),
        pytest.param(TOKEN, "https://host:99999/", PARAMS, "x", None, id="url-port-out-of-range"),
        pytest.param(TOKEN, "https://host:abc/", PARAMS, "x", None, id="url-port-not-a-number"),
        pytest.param(TOKEN, "https://\ud800/", PARAMS, "x", None, id="url-lone-surrogate"),
        pytest.param(TOKEN, URL, 12, "x", None, id="params-int"),
        pytest.param(TOKEN, URL, "From=+1", "x", None, id="params-str"),
        pytest.param(TOKEN, URL, b"From=+1", "x", None, id="params-bytes"),
        pytest.param(TOKEN, URL, {"From": 1}, "x", None, id="value-int"),
        pytest.param(TOKEN, URL, {"From": None}, "x", None, id="value-none"),
        pytest.param(TOKEN, URL, {"From": b"+1"}, "x", None, id="value-bytes"),
        pytest.param(TOKEN, URL, {1: "x"}, "x", None, id="key-int"),
        pytest.param(TOKEN, URL, {"a": "x", 1: "y"}, "x", None, id="keys-mixed"),
        pytest.param(TOKEN, URL, [("a",)], "x", None, id="pair-too-short"),
        pytest.param(TOKEN, URL, [("a", "b", "c")], "x", None, id="pair-too-long"),
        pytest.param(TOKEN, URL, [("a", ["b"])], "x", None, id="pair-list-value"),
        pytest.param(TOKEN, URL, PARAMS, b"RSOYDt4T1cUTdK1PDd93/VVr8B8=", None, id="signature-bytes"),
        pytest.param(TOKEN, URL, PARAMS, "\u00e9\u00e9\u00e9", None, id="signature-non-ascii"),
        pytest.param(TOKEN, URL, PARAMS, "\ud800", None, id="signature-lone-surrogate"),
        pytest.param(TOKEN, URL, PARAMS, 42, None, id="signature-int"),
        pytest.param(TOKEN, f"{URL}&bodySHA256={BODY_HASH}", None, "x", "text", id="body-str"),
        pytest.param(TOKEN, f"{URL}&bodySHA256=\u00e9", None, "x", b"{}", id="body-hash-non-ascii"),
    ],
)
def test_garbage_is_invalid_without_raising(token: Any, url: Any, params: Any, signature: Any, body: Any) -> None:
    assert validate_signature(token, url, params, signature, body=body) is False


@pytest.mark.parametrize("params", [{"From": 1}, [("a",)], "From=+1", {"Digits": [1, 2]}])
def test_compute_rejects_non_str_params(params: Any) -> None:
    with pytest.raises(TypeError, match=r"^webhook parameters must map str names to str values$"):
        compute_signature(TOKEN, URL, params)


def test_validator_rejects_a_non_str_token() -> None:
    with pytest.raises(TypeError, match=r"^auth_token must be a str$"):
        SignatureValidator(b"12345")  # type: ignore[arg-type]


def test_validator_never_shows_the_token() -> None:
    validator = SignatureValidator("super-secret-token")
    assert "super-secret-token" not in repr(validator)
    assert not hasattr(validator, "__dict__")


anything = st.one_of(
    st.none(),
    st.integers(),
    st.text(),
    st.binary(),
    st.lists(st.text()),
    st.dictionaries(st.text(), st.one_of(st.text(), st.lists(st.text()), st.integers())),
    st.lists(st.tuples(st.text(), st.text())),
)
urls = st.one_of(
    st.text(),
    st.builds(
        "{}://{}{}/{}?{}".format,
        st.sampled_from(["http", "https", "ftp", "HTTPS", ""]),
        st.text(max_size=20),
        st.sampled_from(["", ":", ":443", ":80", ":1234", ":x", ":99999", "@", "]"]),
        st.text(max_size=20),
        st.sampled_from(["", "bodySHA256=", f"bodySHA256={BODY_HASH}", "a=1&bodySHA256=%zz"]),
    ),
)


@given(st.one_of(st.text(), anything), st.one_of(urls, anything), anything, anything, anything)
def test_fuzzed_input_never_raises(token: Any, url: Any, params: Any, signature: Any, body: Any) -> None:
    assert validate_signature(token, url, params, signature, body=body) in (True, False)


forms = st.dictionaries(st.text(), st.text()) | st.lists(st.tuples(st.text(), st.text()))


@given(st.text(), urls.filter(lambda url: "bodySHA256" not in url), forms)
def test_computed_signatures_validate(token: str, url: str, params: Params) -> None:
    signature = compute_signature(token, url, params)
    assert validate_signature(token, url, params, signature)
    assert SignatureValidator(token).validate(url, params, signature)


@given(st.text(min_size=1), st.text(), st.text())
def test_default_port_is_interchangeable(path: str, key: str, value: str) -> None:
    path = path.replace("#", "").replace("?", "")
    with_port = compute_signature(TOKEN, f"https://example.com:443/{path}", {key: value})
    assert validate_signature(TOKEN, f"https://example.com/{path}", {key: value}, with_port)


class TestWhatwgQuery:
    """twilio-node validates the query as a WHATWG URL writes it: the apostrophe vector of its test suite."""

    url = f"{URL}&Body=It's+amazing"

    def test_node_vector_for_the_escaped_form(self) -> None:
        assert validate_signature(TOKEN, self.url, PARAMS, "TfZzewPq8wqrGlMfyAud8+/IvJ0=")

    def test_the_literal_form_still_validates(self) -> None:
        assert validate_signature(TOKEN, self.url, PARAMS, "dsq4Ehbj6cs+KdTkpF5sSSplOWw=")

    def test_the_escaped_form_with_the_default_port(self) -> None:
        with_port = compute_signature(TOKEN, self.url.replace(".com/", ".com:443/").replace("'", "%27"), PARAMS)
        assert validate_signature(TOKEN, self.url, PARAMS, with_port)

    def test_only_the_query_is_escaped(self) -> None:
        # The query runs from the first "?" to the first "#": a later "?" is part of it, a fragment is not.
        escaped = compute_signature(TOKEN, "https://example.com/p?q=It%27s?x=It%27s#it's", PARAMS)
        assert validate_signature(TOKEN, "https://example.com/p?q=It's?x=It's#it's", PARAMS, escaped)

    def test_no_other_escaping_is_accepted(self) -> None:
        # Node's legacy querystring form escapes '+' too; only the two forms above are Twilio's.
        other = compute_signature(TOKEN, self.url.replace("+", "%20"), PARAMS)
        assert not validate_signature(TOKEN, self.url, PARAMS, other)
        unescaped = compute_signature(TOKEN, self.url.replace("'", ""), PARAMS)
        assert not validate_signature(TOKEN, self.url, PARAMS, unescaped)
