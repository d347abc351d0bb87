"""The emulator's faults that model Twilio's real ambiguity, each shown doing what the docs promise.

A create whose answer is lost leaves the client in doubt, and its reconciliation probe reads the
Messages list. These faults make both sides of that doubt reproducible: a list that lags behind its
writes (`list_lag`, on a clock the test moves by hand), a timeout with the message stored
(`create_then_timeout`) and one without (`timeout_before_create`), a 500 after the create, and a
stored body that is not the body sent (`SmartEncoded`). `creates_by_message_id()` is the ground truth
a chaos test checks ("created once per id") whatever the client saw.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

# twilio-python ships no type information (no py.typed, no stubs).
from twilio.http.http_client import TwilioHttpClient  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]

from messaging_core import FailureOutcome, Message
from messaging_twilio_sms import TwilioSmsConnector
from messaging_twilio_sms.emulator import (
    HELD_FAULTS,
    POST_CREATE_FAULTS,
    PRE_CREATE_FAULTS,
    ThreadedTwilioEmulator,
    TwilioEmulator,
)
from messaging_twilio_sms.segments import smart_encode

SENDER = "+15005550006"
RECEIVER = "+15551230001"
OTHER_RECEIVER = "+15551230002"

Sms = Callable[..., Message]
Maker = Callable[..., Any]


class ManualClock:
    """A clock for `TwilioEmulator(clock=...)` that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Api:
    """Just enough of a Twilio REST client to drive the emulator (creates, fetches, lists)."""

    def __init__(self, emulator: TwilioEmulator) -> None:
        self.emulator = emulator
        self.account = f"{emulator.base_url}/2010-04-01/Accounts/{emulator.account_sid}"
        self._session = aiohttp.ClientSession(
            headers={"Authorization": aiohttp.encode_basic_auth(emulator.account_sid, emulator.auth_token)}
        )

    async def close(self) -> None:
        await self._session.close()

    async def create(self, time_limit: float = 5.0, **form: str) -> tuple[int, Any]:
        fields = {"To": RECEIVER, "From": SENDER, "Body": "Hello", **form}
        async with self._session.post(
            f"{self.account}/Messages.json", data=fields, timeout=aiohttp.ClientTimeout(total=time_limit)
        ) as response:
            return response.status, await response.json(content_type=None)

    async def get(self, path_qs: str) -> tuple[int, Any]:
        url = path_qs if path_qs.startswith("/2010") else f"/2010-04-01/Accounts/{self.emulator.account_sid}{path_qs}"
        async with self._session.get(self.emulator.base_url + url) as response:
            return response.status, await response.json()

    async def delete(self, sid: str) -> int:
        async with self._session.delete(f"{self.account}/Messages/{sid}.json") as response:
            return response.status

    async def listed(self, query: str = "") -> list[str]:
        """SIDs of every message the list shows, following `next_page_uri` to the end."""
        sids: list[str] = []
        url: str | None = "/Messages.json" + (f"?{query}" if query else "")
        while url is not None:
            status, page = await self.get(url)
            assert status == 200, page
            sids += [record["sid"] for record in page["messages"]]
            url = page["next_page_uri"]
        return sids


class Receiver:
    """A webhook endpoint on loopback that answers 200 and keeps every form it gets."""

    def __init__(self) -> None:
        self.forms: list[dict[str, str]] = []
        self.base = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.forms.append({key: str(value) for key, value in (await request.post()).items()})
        return web.Response(text="")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def lagging(clock: ManualClock) -> AsyncIterator[TwilioEmulator]:
    """An emulator whose Messages list shows a message 5 s (on `clock`) after its create."""
    async with TwilioEmulator(status_interval=0.01, list_lag=5.0, clock=clock) as emu:
        yield emu


@pytest.fixture
async def api(lagging: TwilioEmulator) -> AsyncIterator[Api]:
    client = Api(lagging)
    yield client
    await client.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    await server.stop()


def callback_url(receiver: Receiver, message_id: str) -> str:
    """A StatusCallback as the connector writes it: our message id in the query."""
    return f"{receiver.base}/status?MessageId={quote(message_id)}"


# ----------------------------------------------------------------------------------------------------------
# list_lag
# ----------------------------------------------------------------------------------------------------------


async def test_list_lag_hides_a_new_message_from_the_list_not_from_fetch(
    lagging: TwilioEmulator, api: Api, clock: ManualClock
) -> None:
    status, created = await api.create()
    assert status == 201
    sid = created["sid"]

    assert await api.listed() == []
    assert await api.listed(f"To={quote(RECEIVER)}") == []
    status, fetched = await api.get(f"/Messages/{sid}.json")
    assert (status, fetched["sid"]) == (200, sid)  # fetch by SID finds it at once, as Twilio's does

    clock.advance(4.9)
    assert await api.listed() == []
    clock.advance(0.1)  # exactly list_lag after the create
    assert await api.listed() == [sid]
    assert await api.listed(f"To={quote(RECEIVER)}&From={quote(SENDER)}") == [sid]


async def test_list_lag_applies_per_message_through_filters_and_paging(
    lagging: TwilioEmulator, api: Api, clock: ManualClock
) -> None:
    early = [(await api.create(To=to))[1]["sid"] for to in (RECEIVER, OTHER_RECEIVER, RECEIVER)]
    clock.advance(3)
    late = [(await api.create(To=to))[1]["sid"] for to in (RECEIVER, OTHER_RECEIVER)]
    clock.advance(2)  # the early ones are 5 s old, the late ones 2 s

    assert await api.listed("PageSize=1") == early[::-1]  # newest first, one page each
    assert await api.listed(f"To={quote(RECEIVER)}") == [early[2], early[0]]
    status, page = await api.get(f"/Messages.json?To={quote(OTHER_RECEIVER)}&PageSize=1")
    assert (status, [m["sid"] for m in page["messages"]], page["next_page_uri"]) == (200, [early[1]], None)

    clock.advance(3)
    assert await api.listed("PageSize=2") == [*late[::-1], *early[::-1]]
    assert await api.listed(f"To={quote(OTHER_RECEIVER)}") == [late[1], early[1]]


async def test_list_lag_is_fixed_when_the_message_is_created(
    lagging: TwilioEmulator, api: Api, clock: ManualClock
) -> None:
    lagging.list_lag = 0
    shown = (await api.create())[1]["sid"]
    lagging.list_lag = 60
    hidden = (await api.create())[1]["sid"]

    assert await api.listed() == [shown]  # turning the lag on later hides nothing already created
    clock.advance(60)
    assert await api.listed() == [hidden, shown]


async def test_list_lag_hides_simulated_inbound_messages_too(
    lagging: TwilioEmulator, api: Api, clock: ManualClock, receiver: Receiver
) -> None:
    status, _ = await lagging.simulate_inbound(OTHER_RECEIVER, SENDER, "hi", url=f"{receiver.base}/sms")
    assert status == 200
    (sid,) = lagging.messages
    assert await api.listed() == []
    assert (await api.get(f"/Messages/{sid}.json"))[0] == 200
    clock.advance(5)
    assert await api.listed() == [sid]


async def test_the_connectors_probe_is_blind_during_the_lag(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    """What the reconciliation probe meets at Twilio: a create that succeeded, absent from the list."""
    clock = ManualClock()
    emulator.list_lag, emulator.clock = 5.0, clock
    connector: TwilioSmsConnector = await make_connector()
    message = sms()
    since = datetime.now(UTC)
    sent = await connector.send_message(message)
    assert sent.is_success, sent.error

    assert await connector.find_sent(message, since) == []  # "not sent", though it was
    clock.advance(5)
    assert await connector.find_sent(message, since) == [sent.value.remote_message_id]  # type: ignore[union-attr]


# ----------------------------------------------------------------------------------------------------------
# Timeouts: created (create_then_timeout, and its older name timeout) or not (timeout_before_create)
# ----------------------------------------------------------------------------------------------------------


def test_fault_tables_say_which_timeout_creates() -> None:
    assert {"timeout_before_create", "create_then_timeout", "timeout"} == HELD_FAULTS
    assert "timeout_before_create" in PRE_CREATE_FAULTS
    assert {"create_then_timeout", "timeout"} <= POST_CREATE_FAULTS


@pytest.mark.parametrize("fault", ["create_then_timeout", "timeout"])
async def test_create_then_timeout_stores_the_message_and_runs_its_lifecycle_while_the_client_waits(
    lagging: TwilioEmulator, api: Api, receiver: Receiver, fault: str
) -> None:
    lagging.fault_delay = 30
    lagging.inject(fault)

    with pytest.raises(TimeoutError):
        await api.create(time_limit=0.2, StatusCallback=callback_url(receiver, "m-1"))

    (message,) = lagging.messages.values()
    assert lagging.creates_by_message_id() == Counter({"m-1": 1})
    # The answer is still held (30 s), yet the message goes on as any other: statuses and callbacks.
    await lagging.wait_for_status(message.sid, "delivered")
    statuses = [form["MessageStatus"] for form in receiver.forms]
    assert statuses == ["sending", "sent", "delivered"]
    assert (await api.get(f"/Messages/{message.sid}.json"))[1]["status"] == "delivered"


@pytest.mark.parametrize("fault", ["create_then_timeout", "timeout"])
async def test_create_then_timeout_answers_a_patient_client_late_with_the_message(
    lagging: TwilioEmulator, api: Api, fault: str
) -> None:
    lagging.fault_delay = 0.2
    lagging.inject(fault)
    loop = asyncio.get_running_loop()

    started = loop.time()
    status, created = await api.create()

    assert loop.time() - started >= 0.2
    assert (status, list(lagging.messages)) == (201, [created["sid"]])


async def test_timeout_before_create_stores_nothing_and_then_drops_the_connection(
    lagging: TwilioEmulator, api: Api, clock: ManualClock, receiver: Receiver
) -> None:
    lagging.fault_delay = 0.2
    lagging.inject("timeout_before_create", count=2)

    with pytest.raises(TimeoutError):  # a client that gives up first
        await api.create(time_limit=0.05, StatusCallback=callback_url(receiver, "m-1"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(aiohttp.ClientError):  # a patient one: no answer at all, never a 201
        await api.create(StatusCallback=callback_url(receiver, "m-1"))
    assert loop.time() - started >= 0.2

    assert (lagging.messages, lagging.creates_by_message_id(), lagging.create_requests) == ({}, Counter(), 2)
    clock.advance(60)
    assert await api.listed() == []
    assert receiver.forms == []
    # Used up: the next create is stored and answered at once.
    assert (await api.create(StatusCallback=callback_url(receiver, "m-1")))[0] == 201
    assert lagging.creates_by_message_id() == Counter({"m-1": 1})


@pytest.mark.parametrize("fault", sorted(HELD_FAULTS))
async def test_stopping_lets_held_requests_go(fault: str) -> None:
    emu = TwilioEmulator(status_interval=30, fault_delay=30)
    await emu.start()
    api = Api(emu)
    try:
        emu.inject(fault)
        held = asyncio.create_task(api.create(time_limit=60))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while emu.create_requests == 0:
            assert loop.time() < deadline, "the request never arrived"
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)  # let it reach the hold

        started = loop.time()
        await emu.stop()
        assert loop.time() - started < 3
        with pytest.raises(aiohttp.ClientError):
            await held
        assert len(emu.messages) == (0 if fault in PRE_CREATE_FAULTS else 1)
    finally:
        await api.close()
        await emu.stop()


# ----------------------------------------------------------------------------------------------------------
# 500_after_create, with and without the lag
# ----------------------------------------------------------------------------------------------------------


async def test_500_after_create_stores_the_message_and_the_list_shows_it_only_after_the_lag(
    lagging: TwilioEmulator, api: Api, clock: ManualClock, receiver: Receiver
) -> None:
    lagging.inject("500_after_create")

    status, error = await api.create(StatusCallback=callback_url(receiver, "m-500"))

    assert (status, error["status"], error["code"]) == (500, 500, 20500)
    (sid,) = lagging.messages
    assert lagging.creates_by_message_id() == Counter({"m-500": 1})
    assert (await api.get(f"/Messages/{sid}.json"))[0] == 200
    assert await api.listed(f"To={quote(RECEIVER)}") == []  # a probe now would conclude "absent"
    clock.advance(5)
    assert await api.listed(f"To={quote(RECEIVER)}") == [sid]


# ----------------------------------------------------------------------------------------------------------
# SmartEncoded: Twilio stores the encoded body
# ----------------------------------------------------------------------------------------------------------

TYPOGRAPHIC = "“Smart” quotes — it’s here…"


async def test_smart_encoded_body_is_stored_and_listed_encoded(
    lagging: TwilioEmulator, api: Api, clock: ManualClock
) -> None:
    status, created = await api.create(Body=TYPOGRAPHIC, SmartEncoded="true")
    plain = (await api.create(Body=TYPOGRAPHIC))[1]
    clock.advance(5)
    status_listed, page = await api.get(f"/Messages.json?To={quote(RECEIVER)}")
    assert status_listed == 200

    encoded = '"Smart" quotes - it\'s here...'
    assert smart_encode(TYPOGRAPHIC) == encoded
    assert (status, created["body"], created["num_segments"]) == (201, encoded, "1")  # GSM-7 now
    bodies = {record["sid"]: record["body"] for record in page["messages"]}
    assert bodies == {created["sid"]: encoded, plain["sid"]: TYPOGRAPHIC}
    assert (await api.get(f"/Messages/{created['sid']}.json"))[1]["body"] == encoded
    # A probe comparing bodies as sent matches only the message sent without SmartEncoded.
    assert [sid for sid, body in bodies.items() if body == TYPOGRAPHIC] == [plain["sid"]]


# ----------------------------------------------------------------------------------------------------------
# creates_by_message_id
# ----------------------------------------------------------------------------------------------------------


async def test_creates_by_message_id_counts_stored_creates_whatever_the_client_saw(
    lagging: TwilioEmulator, api: Api, receiver: Receiver
) -> None:
    # The held faults answer after 1.5 s, the client gives up after 0.5 s: margins a loaded machine
    # keeps (with 0.1 s and 0.05 s, a request could time out before it even reached the emulator).
    lagging.fault_delay = 1.5
    outcomes: Mapping[str, str | None] = {
        "ok": None,
        "lost-500": "500_after_create",
        "reset": "reset_after_create",
        "late": "create_then_timeout",
        "refused": "500",
        "never": "timeout_before_create",
    }
    held = {"create_then_timeout", "timeout_before_create"}
    for message_id, fault in outcomes.items():
        if fault is not None:
            lagging.inject(fault)
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            limit = 0.5 if fault in held else 10.0
            await api.create(time_limit=limit, StatusCallback=callback_url(receiver, message_id))
    await api.create(StatusCallback=callback_url(receiver, "ok"))  # a duplicate
    await api.create(StatusCallback=f"{receiver.base}/status?MessageId=theirs&MessageId=ours")
    await api.create()  # no StatusCallback: not ours to count
    await lagging.simulate_inbound(OTHER_RECEIVER, SENDER, "inbound", url=f"{receiver.base}/sms")
    deleted = (await api.create(StatusCallback=callback_url(receiver, "deleted")))[1]["sid"]
    assert await api.delete(deleted) == 204

    assert lagging.creates_by_message_id() == Counter(
        {"ok": 2, "lost-500": 1, "reset": 1, "late": 1, "ours": 1, "deleted": 1}
    )


async def test_creates_by_message_id_reads_the_ids_the_connector_writes(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, receiver: Receiver
) -> None:
    emulator.auto_advance = False
    emulator.fault_delay = 0.6
    connector: TwilioSmsConnector = await make_connector(StatusCallback=f"{receiver.base}/status", RequestTimeout=0.3)
    first, second = sms(), sms()
    emulator.inject("create_then_timeout")

    timed_out = await connector.send_message(first)
    sent = await connector.send_message(second)

    assert timed_out.error is not None
    assert timed_out.error.outcome is FailureOutcome.MAY_HAVE_BEEN_SENT
    assert sent.is_success, sent.error
    assert emulator.creates_by_message_id() == Counter({first.id: 1, second.id: 1})


# ----------------------------------------------------------------------------------------------------------
# From a thread (the command line's flags: test_emulator.py)
# ----------------------------------------------------------------------------------------------------------


def test_threaded_emulator_takes_the_same_options_and_faults() -> None:
    clock = ManualClock()
    with ThreadedTwilioEmulator(list_lag=5.0, clock=clock, fault_delay=0.2, auto_advance=False) as running:
        emu = running.emulator
        http = TwilioHttpClient(timeout=10)
        client = Client(emu.account_sid, emu.auth_token, http_client=http)
        client.api.base_url = emu.base_url
        try:
            callback = "http://127.0.0.1:9/status?MessageId=t-1"
            running.inject("create_then_timeout", match_to=OTHER_RECEIVER)
            first = client.messages.create(to=RECEIVER, from_=SENDER, body="one", status_callback=callback)
            late = client.messages.create(to=OTHER_RECEIVER, from_=SENDER, body="two", status_callback=callback)

            assert client.messages.list() == []
            assert client.messages(first.sid).fetch().sid == first.sid
            clock.advance(5)
            assert [m.sid for m in client.messages.list()] == [late.sid, first.sid]
            assert running.creates_by_message_id() == Counter({"t-1": 2})
        finally:
            http.session.close()
