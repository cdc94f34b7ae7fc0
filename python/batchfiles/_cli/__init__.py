"""The parts of the ``batchfiles`` command line (:mod:`batchfiles.cli` builds the parser and dispatches).

One module a command, each with its ``NAME``, ``SUMMARY``, ``EPILOG`` (help and examples),
``add_arguments(parser)`` and ``run(args) -> int``: ``run``, ``save``, ``track``, ``prepare``, ``url``,
``list_`` (``list``), ``get``, ``logs``, ``view``, ``delete``, ``names``, ``output_files``. What they
share: ``common`` (exit codes, messages, argument types), ``connect`` (storage from options and
environment), ``selection`` (the outputs list, get and delete look at), ``signals`` (forwarded by run,
stopping run and track), ``progress`` (optional tqdm bars).
"""
