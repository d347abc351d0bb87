"""``python -m messaging_twilio_sms.emulator``: run the emulator until Ctrl-C."""

from __future__ import annotations

from ._cli import main

raise SystemExit(main())
