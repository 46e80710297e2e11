"""Trợ lý CCHC: answers citizens' questions about administrative procedures from a curated knowledge base."""

__version__ = "0.1.0"
