"""The third-party distributions below are not collected by the repository's test run.

``echo/`` is a complete channel plugin as an outside author writes it (``docs/writing-a-plugin.md``)
and ``broken/`` one whose entry point fails to import. Neither is installed in the development
environment: ``tests/test_external_author.py`` builds them into wheels, installs them into fresh
virtual environments and runs ``echo``'s own tests there.
"""

collect_ignore = ["echo", "broken"]
