"""``S3Exporter``: the seed's S3 options, as a thin constructor over the fsspec exporter."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from otel_profiling.exporters.backends import WHEN_REQUIRED
from otel_profiling.exporters.storage import FsspecProfileExporter

__all__ = ["WHEN_REQUIRED", "S3Exporter", "s3_storage_options"]


def s3_storage_options(
    *,
    end_point: Optional[str] = None,
    region: Optional[str] = None,
    access_key: Optional[str] = None,
    secret_key: Optional[str] = None,
    session_token: Optional[str] = None,
    use_ssl: bool = True,
    port: Optional[int] = None,
    checksums: str = "when_required",
    s3_additional_kwargs: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """s3fs options from the seed's vocabulary. Unset credentials come from the AWS chain."""
    options: Dict[str, Any] = {}
    if access_key is not None:
        options["key"] = access_key
    if secret_key is not None:
        options["secret"] = secret_key
    if session_token is not None:
        options["token"] = session_token
    scheme = "https" if use_ssl else "http"
    if end_point and end_point != "s3.amazonaws.com":
        if "://" in end_point:
            options["endpoint_url"] = end_point
        else:
            default_port = 443 if use_ssl else 80
            port_part = "" if port in (None, default_port) else f":{port}"
            options["endpoint_url"] = f"{scheme}://{end_point}{port_part}"
    if region:
        options["client_kwargs"] = {"region_name": region}
    options["use_ssl"] = use_ssl
    if checksums == "when_required":
        options["config_kwargs"] = dict(WHEN_REQUIRED)
    elif checksums != "when_supported":
        raise ValueError(
            f"checksums must be 'when_required' or 'when_supported', got {checksums!r}"
        )
    if s3_additional_kwargs:
        options["s3_additional_kwargs"] = dict(s3_additional_kwargs)
    return options


class S3Exporter(FsspecProfileExporter):
    """Writes profiles to ``s3://{bucket}/{prefix}`` with the seed's options.

    ``end_point`` is a host name (``"127.0.0.1"``, ``"minio.internal"``) or a
    full URL; ``"s3.amazonaws.com"`` (or none) plus ``region`` means AWS.
    ``port`` defaults to 443 with ``use_ssl`` and 80 without. Missing
    credentials come from the usual AWS variables, profile or instance role.
    ``checksums="when_required"`` (default) keeps botocore from sending the
    CRC32 checksums some S3-compatible servers reject. ``storage_options``
    adds or overrides s3fs options (e.g. ``{"config_kwargs": {"connect_timeout": 5}}``).
    """

    def __init__(
        self,
        bucket: str,
        *,
        end_point: Optional[str] = None,
        region: Optional[str] = None,
        access_key: Optional[str] = None,
        secret_key: Optional[str] = None,
        session_token: Optional[str] = None,
        use_ssl: bool = True,
        port: Optional[int] = None,
        prefix: str = "",
        checksums: str = "when_required",
        s3_additional_kwargs: Optional[Mapping[str, Any]] = None,
        storage_options: Optional[Mapping[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        if not bucket:
            raise ValueError("S3Exporter needs a bucket name, e.g. S3Exporter(bucket='profiles').")
        options = s3_storage_options(
            end_point=end_point,
            region=region,
            access_key=access_key,
            secret_key=secret_key,
            session_token=session_token,
            use_ssl=use_ssl,
            port=port,
            checksums=checksums,
            s3_additional_kwargs=s3_additional_kwargs,
        )
        for name, value in (storage_options or {}).items():
            if isinstance(value, Mapping) and isinstance(options.get(name), dict):
                options[name] = {**options[name], **value}
            else:
                options[name] = value
        self.bucket = bucket
        url = f"s3://{bucket}/{prefix.strip('/')}".rstrip("/")
        super().__init__(url, options, **kwargs)
