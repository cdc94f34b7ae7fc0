"""The batchfiles demo: a small job on embedded Azurite, named as the Azure portal and Batch Explorer expect.

Run it with `make demo`. It starts Azurite on a free loopback port, prepares the job's container under its
conventions name, saves a task output under `{task}/$TaskOutput/...`, and lists it back.
"""

from __future__ import annotations

from azure.storage.blob import BlobServiceClient
from batchfiles import TaskOutputKind, naming
from batchfiles.testing import Azurite

JOB_ID = "Render_Demo:2026"
TASK_ID = "frame-0001"


def main() -> None:
    with Azurite() as azurite:
        print(f"Azurite (in memory) at {azurite.account_url}")
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        container = service.create_container(naming.container_name(JOB_ID))
        print(f"job {JOB_ID!r} -> container {container.container_name!r}")

        blob = naming.blob_name(TaskOutputKind.TASK_OUTPUT, "out\\frame_0001.txt", TASK_ID)
        container.upload_blob(blob, b"a rendered frame\n")
        print(f"saved out\\frame_0001.txt as {blob!r}")

        print("listing the task's outputs:")
        prefix = naming.blob_prefix(TaskOutputKind.TASK_OUTPUT, TASK_ID) + "/"
        for item in container.list_blobs(name_starts_with=prefix):
            print(f"  {naming.file_path(item.name):<24} {item.size:>6} bytes  ({item.name})")


if __name__ == "__main__":
    main()
