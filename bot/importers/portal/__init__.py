"""Import procedures from the National Public Service Portal's crawled records into knowledge entry files.

The crawled records (`procedures/<agency>/<code>.json`, see ../shared/data/README.md) flatten the portal's
tables: cells run together without separators. The small parsers here split them back into rows only where
the text allows it without guessing; where a split is not sure, the entry keeps the portal's raw text, because
a wrong fee or deadline is worse than an unformatted one. Nothing is invented: every sentence of a generated
entry is either the portal's text or a fixed phrase saying what the portal does (not) give.

    python -m bot.importers.portal SRC DEST [--lists FOLDER] [--source-date 2026-01-31]

`parse` reads a record's cells (channels, documents, legal basis, results, conditions, the crawler's field
shifts), `tables` reads the official XLSX procedure lists, `write` turns a record into an entry file and runs the
import. The package imports the engine's knowledge schema and `bot.config` only, never the service, a channel or
a staff tool; this module re-exports what the index builder, the benchmark and the tests use.
"""

from .parse import (
    Channel,
    check_record,
    clean_conditions,
    documents_sure,
    format_fee,
    format_time,
    legal_rows,
    parse_channels,
    parse_documents,
    parse_legal_basis,
    parse_results,
    repair_record,
)
from .tables import ListRow, read_lists
from .write import ImportReport, entry_id, import_portal, record_to_entry

__all__ = [
    "Channel",
    "ImportReport",
    "ListRow",
    "check_record",
    "clean_conditions",
    "documents_sure",
    "entry_id",
    "format_fee",
    "format_time",
    "import_portal",
    "legal_rows",
    "parse_channels",
    "parse_documents",
    "parse_legal_basis",
    "parse_results",
    "read_lists",
    "record_to_entry",
    "repair_record",
]
