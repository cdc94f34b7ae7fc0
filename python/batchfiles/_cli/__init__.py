"""The parts of the ``batchfiles`` command line (:mod:`batchfiles.cli` is its entry point).

``common``: exit codes, messages, argument types · ``connect``: storage from options and environment
· ``progress``: optional tqdm bars · ``transfer``: prepare, url, names, list, get, save · ``run``: run
and track.
"""
