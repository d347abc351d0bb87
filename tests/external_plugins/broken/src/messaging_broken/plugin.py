"""Entry-point target that fails at import, as a plugin with a missing dependency does."""

from __future__ import annotations

raise ImportError("messaging_broken needs the 'acme-sdk' distribution, which is not installed")
