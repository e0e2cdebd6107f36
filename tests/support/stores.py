"""Local object-store servers for the ``stores`` tier: a GCS emulator and a moto S3 server, on free ports.

:func:`start_servers` starts both as child processes on ``127.0.0.1`` and
returns a :class:`Servers` with their endpoints and the environment the
clients read (``STORAGE_EMULATOR_HOST``, ``AWS_ENDPOINT_URL`` and dummy AWS
credentials); :meth:`Servers.stop` ends them.

The GCS server is gcp-storage-emulator run by :data:`GCS_SERVER` below: the
emulator ignores ``ifGenerationMatch``, so the script adds GCS's documented
precondition to its upload handler (an upload with ``ifGenerationMatch=0`` of
an object that exists gets ``412 Precondition Failed``). The emulator serves
one request at a time, so its check and create cannot interleave. moto's S3
server enforces ``If-None-Match: *`` itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

GCS_BUCKET = "shelf-models"
S3_BUCKET = "shelf-models"

# Run as `python -c GCS_SERVER PORT BUCKET`.
GCS_SERVER = """
import sys
from http import HTTPStatus

from gcp_storage_emulator import server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

upload = objects.insert


def insert(request, response, storage, *args, **kwargs):
    if request.query.get("ifGenerationMatch") == ["0"]:
        name = (request.query.get("name") or [None])[0]
        if name is None and request.query.get("uploadType") == ["multipart"]:
            name = request.data["meta"].get("name")
        try:
            storage.get_file_obj(request.params["bucket_name"], name)
        except NotFound:
            pass
        else:
            response.status = HTTPStatus.PRECONDITION_FAILED
            message = "At least one of the pre-conditions you specified did not hold."
            response.json({"error": {"code": 412, "message": message}})
            return None
    return upload(request, response, storage, *args, **kwargs)


objects.insert = insert
server.HANDLERS = tuple(
    (regex, {method: insert if handler is upload else handler for method, handler in handlers.items()})
    for regex, handlers in server.HANDLERS
)
server.create_server("127.0.0.1", int(sys.argv[1]), in_memory=True, default_bucket=sys.argv[2]).run()
"""


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``env`` set inside the block, as it was outside it."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, proc: subprocess.Popen, name: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer {url} within {timeout:.0f}s: {log.read_text()[-2000:]}")


@dataclasses.dataclass
class Servers:
    """The running servers: endpoints, the clients' environment, the processes."""

    gcs_endpoint: str
    s3_endpoint: str
    env: dict[str, str]
    processes: list[subprocess.Popen]

    def stop(self) -> None:
        """Stop both servers (each by its own process id)."""
        for proc in self.processes:
            proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def start_servers(log_dir: Path) -> Servers:
    """Start the GCS emulator and moto's S3 server on free ports, create the buckets; the running servers."""
    bin_dir = Path(sys.executable).parent
    gcs_port, s3_port = free_port(), free_port()
    gcs_log, s3_log = log_dir / "gcs.log", log_dir / "s3.log"
    processes = []
    try:
        with gcs_log.open("wb") as out:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", GCS_SERVER, str(gcs_port), GCS_BUCKET], stdout=out, stderr=subprocess.STDOUT
                )
            )
        with s3_log.open("wb") as out:
            processes.append(
                subprocess.Popen(
                    [str(bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        gcs, s3 = f"http://127.0.0.1:{gcs_port}", f"http://127.0.0.1:{s3_port}"
        _wait_for(f"{gcs}/", processes[0], "gcp-storage-emulator", gcs_log)
        _wait_for(f"{s3}/moto-api/", processes[1], "moto_server", s3_log)
        env = {
            "STORAGE_EMULATOR_HOST": gcs,
            "AWS_ENDPOINT_URL": s3,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        servers = Servers(gcs, s3, env, processes)
        _create_s3_bucket(servers)
        return servers
    except BaseException:
        for proc in processes:
            proc.kill()
            proc.wait(timeout=10)
        raise


def _create_s3_bucket(servers: Servers) -> None:
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=servers.s3_endpoint,
        region_name=servers.env["AWS_DEFAULT_REGION"],
        aws_access_key_id=servers.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=servers.env["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket=S3_BUCKET)


def s3_client(servers: Servers):
    """A botocore S3 client configured from the servers' environment only (as the app side would be)."""
    import botocore.session

    with environment(servers.env):
        return botocore.session.get_session().create_client("s3")
