"""The task store: the only package with SQL (see :mod:`.writer` for how it works)."""

from .reader import Reader
from .rows import ArticleFilter, StoredEvent
from .sqlite import backup, lock_database, private_dir, private_file
from .tx import Tx
from .writer import MAX_BATCH, Held, Store, hold, open_reader

__all__ = [
    "MAX_BATCH",
    "ArticleFilter",
    "Held",
    "Reader",
    "Store",
    "StoredEvent",
    "Tx",
    "backup",
    "hold",
    "lock_database",
    "open_reader",
    "private_dir",
    "private_file",
]
