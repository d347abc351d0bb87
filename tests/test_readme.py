"""The README's first screen works as written: its send script, against the emulator, in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from messaging_twilio_sms.emulator import ThreadedTwilioEmulator

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_first_python_block_sends_as_written(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    script = re.search(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    assert script is not None
    assert text.index("pip install pluggable-messaging pluggable-messaging-twilio-sms") < script.start()
    with ThreadedTwilioEmulator(auto_advance=False) as running:
        emulator = running.emulator
        (tmp_path / "messaging.toml").write_text(
            "[connectors.sms]\n"
            'channel = "twilio_sms"\n'
            'schema = "SimpleSms"\n'
            "[connectors.sms.parameters]\n"
            f'AccountSid = "{emulator.account_sid}"\nAuthToken = "{emulator.auth_token}"\n'
            f'ApiBaseUrl = "{emulator.base_url}"\n'
        )
        done = subprocess.run(
            [sys.executable, "-c", script.group(1)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        (sent,) = running.messages()
    assert done.stdout.strip() == sent.sid
    assert (sent.to, sent.from_, sent.body) == ("+15558675310", "+15017122661", "Hello")


def test_the_changelog_names_the_current_version() -> None:
    import messaging_core

    changelog = (README.parent / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"— {messaging_core.__version__}" in changelog.split("\n## ", 2)[1].splitlines()[0]
