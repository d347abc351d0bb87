"""Twilio SMS/MMS channel for pluggable-messaging.

Install ``pluggable-messaging-twilio-sms`` and the channel ``twilio_sms`` appears in
``ChannelRegistry.discover()`` through its entry point; nothing else needs importing.
"""

from __future__ import annotations

from messaging_twilio_sms._api import STATUS_TABLE, TwilioErrorCodes, map_status
from messaging_twilio_sms.connector import TwilioSmsConnector
from messaging_twilio_sms.schemas import TwilioChannelSchemas
from messaging_twilio_sms.segments import SegmentInfo, count_segments
from messaging_twilio_sms.settings import TwilioSettings

__all__ = [
    "STATUS_TABLE",
    "SegmentInfo",
    "TwilioChannelSchemas",
    "TwilioErrorCodes",
    "TwilioSettings",
    "TwilioSmsConnector",
    "count_segments",
    "map_status",
]
