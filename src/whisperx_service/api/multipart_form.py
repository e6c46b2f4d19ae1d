"""Multipart parser callbacks: the file part goes to a `SourceWriter`, the other fields are collected.

The first `SNIFF_BYTES` of the file are held back until libmagic has looked at them, so a file
that is not audio or video is refused before anything is written. Which fields a route accepts,
and what it makes of them, is its `FormSpec` (`JOB_FORM` for POST /v1/jobs). While the body
streams, the file's bytes are hashed (SHA-256): with the fields and the file name they make the
upload's fingerprint, which tells a repeated submission from a different one (Idempotency-Key).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import magic
from pydantic import ValidationError
from python_multipart.multipart import parse_options_header

from whisperx_service.api.writer import SourceWriter
from whisperx_service.domain.jobs import JobOptions
from whisperx_service.domain.script import Script, parse_script
from whisperx_service.errors import (
    InvalidRequest,
    InvalidTranscript,
    PayloadTooLarge,
    TranscriptRequired,
    TranscriptTooLong,
    UnsupportedMedia,
)
from whisperx_service.storage.intake import UNSUPPORTED_MEDIA

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

#: Name of the form part that carries the audio.
FILE_FIELD = "file"
#: Form fields accepted besides the file: the `JobOptions` fields a user sets.
OPTION_FIELDS = frozenset(JobOptions.model_fields) - {"rediarize_of"}
#: The form field with an `align` job's transcript (plain text or JSON, up to MAX_TRANSCRIPT_BYTES).
TRANSCRIPT_FIELD = "transcript"

T = TypeVar("T")


@dataclass(frozen=True)
class FormSpec(Generic[T]):
    """The form fields a route accepts besides `file`, and what it makes of them.

    Attributes:
        names: fields given at most once.
        repeatable: fields that may repeat (`x[]`); their values are kept in order.
        prefixes: fields accepted by name prefix (e.g. `chunking_strategy` for `chunking_strategy[type]`),
            once each.
        parse: builds the route's value from (single fields, repeated fields); it runs when the
            file part begins (so bad fields sent first are refused before the file is read) and
            after the body. Raises a `ServiceError` (InvalidRequest, InvalidParameter, ...).
        max_fields: most field parts in all (bounds the body: see `upload.body_limit`).
        answer_only: fields that shape only the answer, not the job (e.g. OpenAI's
            `response_format`): left out of the fingerprint, so a repeat with the same
            Idempotency-Key may ask for the same job in another format.
        large_fields: fields (of `names`) that may hold up to MAX_TRANSCRIPT_BYTES instead of
            MAX_FORM_FIELD_BYTES (a transcript); a longer one is refused with `TranscriptTooLong`.
    """

    names: frozenset[str]
    parse: Callable[[Mapping[str, str], Mapping[str, list[str]]], T]
    repeatable: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    max_fields: int = 0
    answer_only: frozenset[str] = frozenset()
    large_fields: frozenset[str] = frozenset()

    def accepts(self, name: str) -> bool:
        """True when `name` is a field of this form (not `file`)."""
        return name in self.names or name in self.repeatable or name.startswith(self.prefixes)

    @property
    def field_limit(self) -> int:
        """Most field parts a body may carry: `max_fields`, or one per single field."""
        return self.max_fields or len(self.names)


#: Bytes of the file libmagic looks at before anything is written.
SNIFF_BYTES = 2048
#: Media types (from libmagic) accepted besides every `audio/*` and `video/*`.
ALLOWED_MEDIA_TYPES = frozenset(
    {
        "application/octet-stream",  # raw or unrecognised streams (ffprobe decides later)
        "application/ogg",
        "application/x-ogg",
        "application/mp4",
        "application/x-matroska",
        "video/webm",
        "application/vnd.rn-realmedia",
    }
)
_MAX_FILENAME_CHARS = 255


def clean_filename(raw: str | None) -> str | None:
    """The client's file name as safe metadata: last path component, printable, at most 255 chars.

    Returns None when nothing usable is left.
    """
    if not raw:
        return None
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(c for c in base if c.isprintable()).strip()
    if cleaned in ("", ".", ".."):
        return None
    return cleaned[:_MAX_FILENAME_CHARS]


def media_type_allowed(media_type: str) -> bool:
    """True for audio/*, video/* and the container types in `ALLOWED_MEDIA_TYPES`."""
    return media_type.startswith(("audio/", "video/")) or media_type in ALLOWED_MEDIA_TYPES


@dataclass(eq=False)
class FormReader:
    """Parser callbacks: route the file part to disk (or only hash it) and collect the small fields.

    With `tmp_path` None the file is only counted and hashed, never written (the repeat of an
    idempotent submission: its fingerprint is compared, its bytes are not kept).

    Raises (from the callbacks, so from `MultipartParser.write`):
        InvalidRequest: a part without a name, an unknown or repeated field, too many fields, a
            field over `max_field_bytes`, a value that is not UTF-8; whatever `spec.parse` raises.
        TranscriptTooLong: a field of `spec.large_fields` over `max_large_field_bytes`.
        PayloadTooLarge: the file part exceeds `max_file_bytes`.
        UnsupportedMedia: libmagic says the file is not audio or video.
    """

    tmp_path: Path | None
    max_file_bytes: int
    max_field_bytes: int
    spec: FormSpec[Any]
    max_large_field_bytes: int = 0
    writer: SourceWriter | None = None
    size: int = 0
    filename: str | None = None
    media_type: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    multi: dict[str, list[str]] = field(default_factory=dict)
    file_seen: bool = False
    done: bool = False
    _file_hash: Any = field(default_factory=hashlib.sha256)
    _field_parts: int = 0
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _hname: bytearray = field(default_factory=bytearray)
    _hvalue: bytearray = field(default_factory=bytearray)
    _part: str | None = None  # FILE_FIELD, an option name, or None between parts
    _value: bytearray = field(default_factory=bytearray)
    _sniff: bytearray | None = field(default_factory=bytearray)  # None once checked

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers.clear()
        self._part = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._hname).lower()] = bytes(self._hvalue)
        self._hname.clear()
        self._hvalue.clear()

    def _headers_finished(self) -> None:
        disposition = self._headers.get(b"content-disposition", b"")
        # latin-1 round-trips the raw bytes; names are decoded as UTF-8 below.
        kind, params = parse_options_header(disposition.decode("latin-1"))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if kind != b"form-data" or not name:
            raise InvalidRequest("every multipart part needs `Content-Disposition: form-data; name=...`")
        if name == FILE_FIELD:
            if self.file_seen:
                raise InvalidRequest("more than one `file` part")
            self.file_seen = True
            raw_name = params.get(b"filename")
            self.filename = clean_filename(raw_name.decode("utf-8", "replace") if raw_name else None)
            self.spec.parse(self.fields, self.multi)  # refuse bad fields sent before the file, before reading it
            if self.tmp_path is not None:
                self.writer = SourceWriter(self.tmp_path)
        elif self.spec.accepts(name):
            if name in self.fields:
                raise InvalidRequest(f"form field {name!r} given more than once")
            self._field_parts += 1
            if self._field_parts > self.spec.field_limit:
                raise InvalidRequest(f"more than {self.spec.field_limit} form fields")
            self._value.clear()
        else:
            raise InvalidRequest(f"unknown form field {name[:64]!r}; expected `file` and the route's fields")
        self._part = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == FILE_FIELD:
            self._file_data(data, start, end)
        elif self._part is not None:
            if self._part in self.spec.large_fields:
                if len(self._value) + end - start > self.max_large_field_bytes:
                    raise TranscriptTooLong(
                        f"form field {self._part!r} is longer than {self.max_large_field_bytes} bytes"
                    )
            elif len(self._value) + end - start > self.max_field_bytes:
                raise InvalidRequest(f"form field {self._part!r} is longer than {self.max_field_bytes} bytes")
            self._value += data[start:end]

    def _file_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if n <= 0:
            return
        self.size += n
        if self.size > self.max_file_bytes:
            raise PayloadTooLarge(f"upload exceeds the limit of {self.max_file_bytes} bytes")
        self._file_hash.update(memoryview(data)[start:end])
        if self.writer is None:  # hashing only (tmp_path None)
            return
        if self._sniff is None:
            self.writer.append(memoryview(data)[start:end])
            return
        take = min(n, SNIFF_BYTES - len(self._sniff))
        self._sniff += data[start : start + take]
        if len(self._sniff) >= SNIFF_BYTES:
            self._check_type()
            if take < n:
                self.writer.append(memoryview(data)[start + take : end])

    def _check_type(self) -> None:
        head = self._sniff
        if head is None:
            return
        self._sniff = None
        if not head:
            return
        self.media_type = str(magic.from_buffer(bytes(head), mime=True))
        if not media_type_allowed(self.media_type):
            raise UnsupportedMedia(UNSUPPORTED_MEDIA)
        assert self.writer is not None
        self.writer.append(memoryview(head))

    def _part_end(self) -> None:
        if self._part == FILE_FIELD:
            self._check_type()
        elif self._part is not None:
            try:
                value = self._value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequest(f"form field {self._part!r} is not UTF-8") from None
            if self._part in self.spec.repeatable:
                self.multi.setdefault(self._part, []).append(value)
            else:
                self.fields[self._part] = value
        self._part = None

    def _end(self) -> None:
        self.done = True

    def fingerprint(self) -> str:
        """SHA-256 hex of the upload's content: the file's bytes, its cleaned name and every field
        (repeated ones in order) but the spec's `answer_only` ones. Multipart framing (the
        boundary, part order) does not count, so one request sent again by a client gives the
        same fingerprint."""
        skip = self.spec.answer_only
        doc = {
            "file_sha256": self._file_hash.hexdigest(),
            "filename": self.filename,
            "fields": {k: v for k, v in self.fields.items() if k not in skip},
            "multi": {k: v for k, v in self.multi.items() if k not in skip},
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode("utf-8")).hexdigest()


def parse_options(fields: Mapping[str, str]) -> JobOptions:
    """Validate the option fields (empty values mean 'not given').

    Raises:
        InvalidRequest: a value is malformed or values contradict each other.
    """
    try:
        return JobOptions.model_validate({k: v for k, v in fields.items() if v.strip() != ""})
    except ValidationError as e:
        parts = []
        for err in e.errors():
            where = ".".join(str(x) for x in err["loc"])
            parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
        raise InvalidRequest("; ".join(parts)) from None


@dataclass(frozen=True, slots=True)
class JobForm:
    """The fields of POST /v1/jobs: the job's options and, for an `align` job, its transcript."""

    options: JobOptions
    script: Script | None = None

    def complete(self) -> JobForm:
        """Check the fields against each other, once the whole body is read (a field may follow the file).

        Raises:
            TranscriptRequired: `task=align` without a `transcript`.
            InvalidRequest: a `transcript` for another task.
        """
        if self.options.task == "align" and self.script is None:
            raise TranscriptRequired("task=align needs a `transcript` field: plain text, or a job's JSON result")
        if self.options.task != "align" and self.script is not None:
            raise InvalidRequest("the `transcript` field is only for task=align")
        return self


def parse_job_form(fields: Mapping[str, str]) -> JobForm:
    """The option fields (`parse_options`) and the transcript (`domain.script.parse_script`).

    Raises:
        InvalidRequest: an option is malformed. InvalidTranscript: the transcript cannot be read.
    """
    options = parse_options({k: v for k, v in fields.items() if k != TRANSCRIPT_FIELD})
    raw = fields.get(TRANSCRIPT_FIELD)
    if raw is None or not raw.strip():
        return JobForm(options)
    try:
        return JobForm(options, parse_script(raw))
    except ValueError as e:
        raise InvalidTranscript(str(e)) from None


#: The form of POST /v1/jobs: the `JobOptions` fields a user sets and `transcript`, each at most once.
JOB_FORM: FormSpec[JobForm] = FormSpec(
    names=OPTION_FIELDS | {TRANSCRIPT_FIELD},
    parse=lambda fields, _multi: parse_job_form(fields),
    large_fields=frozenset({TRANSCRIPT_FIELD}),
)
