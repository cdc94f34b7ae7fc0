"""Local files to save, as ``save_many``, ``save_files`` and the command line pick and name them.

- :func:`expand`, :func:`is_pattern`: the Batch service's ``OutputFiles`` wildcard patterns (``*``, ``?``,
  ``[abc]``, ``**``; see :meth:`batchfiles.TaskOutputStorage.save_many` for the rules), matched by a walk
  that never leaves its base folder: ``(local path, path under it)`` of each file, sorted.
- :class:`OutputSpec`, :func:`parse_spec`: ``PATTERN[=KIND][@CONDITION]``, an output of ``batchfiles run
  --output`` and of :func:`batchfiles.batch.output_files`.
- :func:`name_files`, :func:`unique_names`, :func:`same_file`: every blob name of many files derived before
  any is saved, so that two files never share one (``save_files`` checks the same way).
"""

from __future__ import annotations

from ._patterns import OutputSpec, expand, is_pattern, parse_spec
from ._saving import name_files, same_file, unique_names

__all__ = ["OutputSpec", "expand", "is_pattern", "name_files", "parse_spec", "same_file", "unique_names"]
