"""Staff tools: review the questions the bot could not answer, the HTML report, the generated sample log, and their
commands (`python -m bot review | report | log purge`).

Staff tools import the engine and the service (the question log), never a channel; channel names and colours come from
the channel registry (`bot.channels.registry`).
"""
