"""Reading datasets into samples: conversations plus the images they refer to."""

from vlmtune.data.errors import DataError
from vlmtune.data.schema import Sample

__all__ = ["DataError", "Sample"]
