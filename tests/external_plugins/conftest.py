"""The third-party distributions below are not collected by the repository's test run.

``echo/`` is a complete channel plugin as an outside author writes it (``docs/writing-a-plugin.md``).
It is not installed in the development environment: ``tests/test_external_author.py`` builds it
into a wheel, installs it into a fresh virtual environment and runs its own tests there.
"""

collect_ignore = ["echo"]
