"""The service every channel shares: the desk (one queue of questions, conversations, rate limits, follow-ups),
the question log (masked, pseudonymous) and the handoff of a conversation to staff.

The service imports the engine and `bot.config`, never a channel or a staff tool.
"""
