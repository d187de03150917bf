"""Object storage for uploaded files: the local data dir by default, or an S3-compatible bucket.

Every file the application keeps (evidence, missing-person photos, review cards, the web chat's
uploads) goes through one :class:`ObjectStore`, created once in the application context
(``ctx.files``). Keys are ``/``-separated relative names, e.g. ``files/ab/ab12…`` (a
content-addressed blob, :mod:`backend.core.files`) or ``web-files/3f/off-3f…``.

- :class:`LocalStore` keeps key ``k`` at ``<data_dir>/k`` — exactly the layout Hehe always used,
  so an existing data dir keeps working.
- :class:`S3Store` keeps it as object ``k`` in a bucket of an S3-compatible service (MinIO in
  the compose file; AWS S3, Aliyun OSS, …). Chosen when ``HEHE_S3_BUCKET`` is set; boto3 is the
  optional extra ``hehe[s3]``. boto3 is synchronous: each call runs in a worker thread.
"""
from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from backend.core.config import Settings

KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$")


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: float  # seconds since the epoch


class ObjectStore(Protocol):
    """What the application needs of a file store. ``get`` of a missing key is None; ``delete``
    of a missing key is no error."""

    async def put(self, key: str, data: bytes) -> None: ...
    async def get(self, key: str) -> bytes | None: ...
    async def delete(self, key: str) -> None: ...
    async def exists(self, key: str) -> bool: ...
    async def list(self, prefix: str) -> list[ObjectInfo]: ...


def check_key(key: str) -> str:
    """Keys are relative names without ``..`` or empty parts: never a way out of the store."""
    if not isinstance(key, str) or len(key) > 512 or not KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"bad object key {key!r}")
    return key


class LocalStore:
    """Keys as files under ``root`` (the data dir). Writes are atomic (a temporary file renamed)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _put(self, key: str, data: bytes) -> None:
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{id(data):x}.tmp")
        tmp.write_bytes(data)
        tmp.replace(p)

    def _get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def _list(self, prefix: str) -> list[ObjectInfo]:
        base = self.root / check_key(prefix.rstrip("/")) if prefix.strip("/") else self.root
        out = []
        if base.is_dir():
            for p in base.rglob("*"):
                if p.name.endswith(".tmp") or not p.is_file():
                    continue
                try:
                    st = p.stat()
                except FileNotFoundError:  # removed meanwhile
                    continue
                out.append(ObjectInfo(p.relative_to(self.root).as_posix(), st.st_size, st.st_mtime))
        return sorted(out, key=lambda o: o.key)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, key, data)

    async def get(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self._get, key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def list(self, prefix: str) -> list[ObjectInfo]:
        return await asyncio.to_thread(self._list, prefix)


class S3Store:
    """Keys as objects in ``bucket`` of an S3-compatible service at ``endpoint`` (None: AWS)."""

    def __init__(self, bucket: str, *, endpoint: str | None = None, access_key: str | None = None,
                 secret_key: str | None = None, region: str = "us-east-1", prefix: str = "") -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as e:  # pragma: no cover - a deployment without the extra
            raise RuntimeError("HEHE_S3_BUCKET is set but boto3 is not installed: pip install 'hehe[s3]'") from e
        self.bucket = bucket
        self.endpoint = endpoint
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint or None, aws_access_key_id=access_key or None,
            aws_secret_access_key=secret_key or None, region_name=region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"},
                          connect_timeout=5, read_timeout=30))

    def __repr__(self) -> str:
        return f"S3Store({self.endpoint or 'aws'!r}, bucket={self.bucket!r})"

    @staticmethod
    def _missing(e: Exception) -> bool:
        code = str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            if not self._missing(e):
                raise
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except ClientError as e2:  # another replica created it first
                if e2.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def _get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + check_key(key))["Body"].read()
        except ClientError as e:
            if self._missing(e):
                return None
            raise

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.prefix + check_key(key))
            return True
        except ClientError as e:
            if self._missing(e):
                return False
            raise

    def _list(self, prefix: str) -> list[ObjectInfo]:
        out = []
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        for page in pages:
            for o in page.get("Contents", []):
                out.append(ObjectInfo(o["Key"][len(self.prefix):], int(o["Size"]), o["LastModified"].timestamp()))
        return sorted(out, key=lambda o: o.key)

    async def start(self) -> None:
        """Create the bucket when it is not there yet (MinIO starts empty). A service that cannot
        be reached or refuses the keys stops the start-up with a clear message."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            await asyncio.to_thread(self._ensure_bucket)
        except (BotoCoreError, ClientError) as e:
            raise RuntimeError(f"object storage {self!r} is not usable: {e}") from e

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self.client.put_object, Bucket=self.bucket, Key=self.prefix + check_key(key), Body=data)

    async def get(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self._get, key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self.prefix + check_key(key))

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._exists, key)

    async def list(self, prefix: str) -> list[ObjectInfo]:
        return await asyncio.to_thread(self._list, prefix)


def make_store(settings: Settings) -> ObjectStore:
    """The store the settings choose: S3 when ``s3_bucket`` is set, else the data dir."""
    if settings.s3_bucket:
        return S3Store(settings.s3_bucket, endpoint=settings.s3_endpoint, access_key=settings.s3_access_key,
                       secret_key=settings.s3_secret_key, region=settings.s3_region, prefix=settings.s3_prefix)
    return LocalStore(settings.data_dir)


async def start_store(store: ObjectStore) -> None:
    start = getattr(store, "start", None)
    if start is not None:
        await start()
