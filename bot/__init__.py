"""Trợ lý CCHC: answers citizens' questions about administrative procedures from a curated knowledge base.

The parts, each a package that says what it may import (tests/test_layout.py keeps the walls):

- `bot.engine`: knowledge files → index → retrieval → a channel-agnostic `Answer`.
- `bot.service`: the desk every channel shares, the question log, the handoff to staff.
- `bot.channels`: terminal, Telegram, Zalo, web chat, one renderer, and the registry of channels.
- `bot.staff`: review, report, sample log and their commands.
- `bot.importers`: the national portal importer.

`bot.cli` wires them together; `bot.config` holds the settings every part reads.
"""

__version__ = "0.1.0"
