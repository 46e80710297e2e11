"""The terminal chat (`python -m bot chat`): one citizen at a keyboard, answers as plain text."""

from __future__ import annotations

import sys

from bot.engine.answer import Conversation
from bot.engine.assistant import Assistant

from . import ChannelInfo
from .render import to_text

CHANNEL = ChannelInfo("terminal", "Dòng lệnh", "#5B6770")
EXIT_WORDS = {"thoat", "thoát", "exit", "quit", "q", "/thoat", "/exit"}


def chat(assistant: Assistant) -> int:
    """Read questions until 'thoát' or end of input; remember the procedure being discussed."""
    conversation = Conversation()
    print("Trợ lý CCHC — hỏi về thủ tục hành chính, cải cách hành chính. Gõ 'thoát' để kết thúc.\n")
    while True:
        try:
            question = input("Bạn: ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if question.strip().lower() in EXIT_WORDS:
            return 0
        if not question.strip():
            continue
        print("\nTrợ lý: " + to_text(assistant.ask(question, conversation)) + "\n", flush=True)
        sys.stdout.flush()
