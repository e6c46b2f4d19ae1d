"""`POST /v1/jobs` bodies that carry fields only, no file: JSON or a urlencoded form.

Such a body names where the job's file comes from instead of carrying it: `url` (fetched by the
outbound worker, `api/url_jobs.py`) or `upload_id` (a finished resumable upload,
`api/upload_jobs.py`), with the job options. It is small and read whole.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from starlette.requests import Request

from whisperx_service.errors import InvalidRequest, PayloadTooLarge

#: Body types of `POST /v1/jobs` that carry fields only (a file upload is multipart).
FIELD_BODY_TYPES = ("application/json", "application/x-www-form-urlencoded")
#: Largest such body (bytes): a URL or an upload id, and the job options.
MAX_FIELD_BODY_BYTES = 64 * 1024


def is_field_body(request: Request) -> bool:
    """True when the request's body is JSON or a urlencoded form (fields, no file)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower() in FIELD_BODY_TYPES


async def read_fields(request: Request) -> dict[str, str]:
    """The fields of a JSON object or urlencoded form body (a JSON boolean reads `true`/`false`; a
    null is left out).

    Raises:
        PayloadTooLarge: the body is over MAX_FIELD_BODY_BYTES.
        InvalidRequest: not a JSON object / a urlencoded form, or a field given twice.
    """
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FIELD_BODY_BYTES:
            raise PayloadTooLarge(f"the body is over {MAX_FIELD_BODY_BYTES} bytes")
    fields: dict[str, str] = {}
    try:
        if request.headers.get("content-type", "").lower().startswith("application/json"):
            doc = json.loads(bytes(body) or b"null")
            if not isinstance(doc, dict):
                raise InvalidRequest("the body must be a JSON object with `url` or `upload_id`")
            for k, v in doc.items():
                if v is not None:
                    fields[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
        else:
            for k, v in parse_qsl(bytes(body).decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)):
                if k in fields:
                    raise InvalidRequest(f"field {k[:64]!r} is given twice")
                fields[k] = v
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested too deep
        raise InvalidRequest("the body is not valid JSON / a urlencoded form") from None
    return fields
