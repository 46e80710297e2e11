"""Importers: turn outside data (the National Public Service Portal's procedure records) into knowledge files.

They run when an admin imports, never while the bot serves. They import the engine's knowledge schema and
`bot.config`, never the service, a channel or a staff tool.
"""
