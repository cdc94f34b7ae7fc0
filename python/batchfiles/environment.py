"""The environment variables batchfiles reads, and the durations they (and the command line) take.

On a Batch node: ``AZ_BATCH_JOB_ID`` and ``AZ_BATCH_TASK_ID`` (set by Batch); the storage, the first set of
``BATCHFILES_CONTAINER_URL`` (a container URL with a SAS, as ``batchfiles url`` prints),
``AZURE_STORAGE_CONNECTION_STRING`` and ``AZURE_STORAGE_ACCOUNT_URL`` (signed in with
``DefaultAzureCredential``); ``BATCHFILES_SAS_MARGIN``, how long before a SAS expires a warning is due
(:func:`parse_duration`'s form). ``from_environment`` and ``service_from_environment`` read them.
"""

from __future__ import annotations

from ._environment import ENV_ACCOUNT_URL, ENV_CONNECTION_STRING, ENV_CONTAINER_URL, ENV_JOB_ID, ENV_TASK_ID
from ._sas import ENV_SAS_MARGIN, parse_duration

__all__ = [
    "ENV_ACCOUNT_URL",
    "ENV_CONNECTION_STRING",
    "ENV_CONTAINER_URL",
    "ENV_JOB_ID",
    "ENV_SAS_MARGIN",
    "ENV_TASK_ID",
    "parse_duration",
]
