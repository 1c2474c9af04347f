"""Model versions as assets of the spec: each declared artifact, uploaded by content.

A version's `artifact` is a model directory, a `model.tar.gz` (paths relative to the spec file)
or an `s3://` URI. A directory is packed into a reproducible archive; the archive is uploaded
once, under `models/sha256/<digest>/model.tar.gz` of the model bucket, with SSE-KMS under the
pipeline key, so an unchanged artifact is never uploaded again and a changed one is a new
object. The version's metadata parameter (`ssm:metadata-<version>`) records where it is and
its digest, and the SageMaker Model is created from it afterwards. An `s3://` URI is used as it
is; while the object does not exist, what serves the version is blocked.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff
from mlpipe.core.errors import UsageError
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.resources.kms import KEY

ARTIFACT = "model.tar.gz"
MODEL_BUCKET = "s3:models"
KIND = "artifact"


def artifact_key(version: str) -> str:
    return f"{KIND}:{version}"


def content_key(sha256: str) -> str:
    return f"models/sha256/{sha256}/{ARTIFACT}"


def _entry(name: str, size: int | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if size is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = size, 0o644
    return info


def archive(files: dict[str, bytes]) -> bytes:
    """A model.tar.gz of `files` (path → bytes) whose bytes depend on nothing but the files."""
    directories = {str(Path(name).parent) for name in files} - {"."}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(directories | set(files)):
            if name in directories:
                tar.addfile(_entry(name, None))
            else:
                tar.addfile(_entry(name, len(files[name])), io.BytesIO(files[name]))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def pack(path: Path) -> bytes:
    """A model directory as a reproducible model.tar.gz; an existing archive as it is."""
    if path.is_file():
        data = path.read_bytes()
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UsageError(f"{path} is not a gzip tar archive (model.tar.gz)") from exc
        return data
    if not path.is_dir():
        raise UsageError(f"{path} is neither a model directory nor a model.tar.gz")
    files = {
        file.relative_to(path).as_posix(): file.read_bytes()
        for file in path.rglob("*")
        if file.is_file() and "__pycache__" not in file.parts
    }
    if not files:
        raise UsageError(f"{path} is empty: nothing to register")
    return archive(files)


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


@dataclass(frozen=True)
class Packed:
    body: bytes

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


class Artifact(Resource):
    """One version's model archive in S3 (kept with the model bucket on destroy)."""

    kind = KIND

    def __init__(self, ctx: Context, version: str, source: str) -> None:
        super().__init__(ctx, version, source, depends_on=(KEY, MODEL_BUCKET))
        self.source = source
        self.retain = ctx.spec.storage.model_bucket.retain_on_destroy

    @property
    def external(self) -> bool:
        return self.source.startswith("s3://")

    @cached_property
    def packed(self) -> Packed:
        return Packed(pack(Path(self.source)))

    def location(self) -> tuple[str, str]:
        if self.external:
            return split_s3(self.source)
        return self.ctx.names.model_bucket, content_key(self.packed.sha256)

    def _outputs(self, head: dict[str, Any]) -> Outputs:
        bucket, key = self.location()
        digest = None if self.external else self.packed.sha256
        return {"s3Path": f"s3://{bucket}/{key}", "sha256": digest, "size": head["ContentLength"]}

    def read(self) -> Observed | None:
        bucket, key = self.location()
        head = self.find("s3", "head_object", Bucket=bucket, Key=key)
        if head is None:
            return None
        if self.external:  # someone else's object: used, never changed or deleted
            return Observed({}, self._outputs(head), owned=False)
        state = {
            "ServerSideEncryption": head.get("ServerSideEncryption"),
            "SSEKMSKeyId": head.get("SSEKMSKeyId"),
        }
        return Observed(state, self._outputs(head))

    def blocked(self, observed: Observed | None) -> str | None:
        if self.external and observed is None:
            return f"{self.name}'s artifact {self.source} does not exist"
        return None

    def desired(self, refs: Refs) -> dict[str, Any]:
        if self.external:
            return {}
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": refs(KEY, "arn")}

    def create(self, desired: dict[str, Any]) -> Outputs:
        # Content-addressed: a retried or repeated upload writes the same bytes to the same key.
        bucket, key = self.location()
        body = self.packed.body
        self.client("s3").put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=desired["SSEKMSKeyId"],
        )
        return self._outputs({"ContentLength": len(body)})

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        return self.create(desired)  # encrypted otherwise: upload again under the pipeline key

    def delete(self, observed: Observed) -> None:
        if self.external:
            return
        bucket, key = self.location()
        self.client("s3").delete_object(Bucket=bucket, Key=key)


def declared(ctx: Context) -> dict[str, str]:
    """version → its artifact, for the versions of the spec that declare one."""
    return {v: s.artifact for v, s in ctx.spec.models.versions.items() if s.artifact}


def resources(ctx: Context) -> list[Resource]:
    return [Artifact(ctx, version, source) for version, source in declared(ctx).items()]
