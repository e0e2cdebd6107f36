"""TFLite model metadata (the ``M001`` flatbuffer MediaPipe Tasks reads), written and read here.

With the flatbuffers runtime and LiteRT's generated TFLite schema only: no TensorFlow, no TFLite Support.
:data:`TABLES` describes the part of the metadata schema we use, field by field in schema order;
:func:`encode` and :func:`decode` walk it both ways with the JSON shape MediaPipe's ``MetadataDisplayer``
prints, so what we write is checked against what MediaPipe shows. Archives get a fixed timestamp: the
same model and files give the same bytes.

See docs/bucket-contract.md#the-tasks-variant-and-its-metadata for the format.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import flatbuffers
from flatbuffers import number_types
from flatbuffers.table import Table

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
MODEL_IDENTIFIER = b"TFL3"
# Every field written here exists since the first metadata parser version.
MIN_PARSER_VERSION = "1.0.0"
# Zip entries carry this time (the zip format's earliest), not the time of writing.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of a metadata table.

    ``kind``: ``string``, ``strings``, ``floats``, ``uint``, ``int``, ``enum``
    (a byte enum named by ``ref``), ``table`` / ``tables`` (one or a vector
    of the table ``ref``), ``union_type`` / ``union`` (the two slots of the
    union ``ref``).
    """

    name: str
    kind: str
    ref: str = ""


def _fields(*specs: str) -> tuple[Field, ...]:
    return tuple(Field(*spec.split(":")) for spec in specs)


ENUMS: dict[str, tuple[str, ...]] = {
    "AssociatedFileType": (
        "UNKNOWN",
        "DESCRIPTIONS",
        "TENSOR_AXIS_LABELS",
        "TENSOR_VALUE_LABELS",
        "TENSOR_AXIS_SCORE_CALIBRATION",
        "VOCABULARY",
        "SCANN_INDEX_FILE",
    ),
    "ColorSpaceType": ("UNKNOWN", "RGB", "GRAYSCALE"),
}
# Union members in schema order; index 0 is NONE. Members without a table below are read as {}.
UNIONS: dict[str, tuple[str, ...]] = {
    "ContentProperties": ("NONE", "FeatureProperties", "ImageProperties", "BoundingBoxProperties", "AudioProperties"),
    "ProcessUnitOptions": (
        "NONE",
        "NormalizationOptions",
        "ScoreCalibrationOptions",
        "ScoreThresholdingOptions",
        "BertTokenizerOptions",
        "SentencePieceTokenizerOptions",
        "RegexTokenizerOptions",
    ),
}
TABLES: dict[str, tuple[Field, ...]] = {
    "AssociatedFile": _fields(
        "name:string", "description:string", "type:enum:AssociatedFileType", "locale:string", "version:string"
    ),
    "FeatureProperties": (),
    "ImageSize": _fields("width:uint", "height:uint"),
    "ImageProperties": _fields("color_space:enum:ColorSpaceType", "default_size:table:ImageSize"),
    "ValueRange": _fields("min:int", "max:int"),
    "Content": _fields(
        "content_properties_type:union_type:ContentProperties",
        "content_properties:union:ContentProperties",
        "range:table:ValueRange",
    ),
    "NormalizationOptions": _fields("mean:floats", "std:floats"),
    "ProcessUnit": _fields("options_type:union_type:ProcessUnitOptions", "options:union:ProcessUnitOptions"),
    "Stats": _fields("max:floats", "min:floats"),
    "TensorMetadata": _fields(
        "name:string",
        "description:string",
        "dimension_names:strings",
        "content:table:Content",
        "process_units:tables:ProcessUnit",
        "stats:table:Stats",
        "associated_files:tables:AssociatedFile",
    ),
    "SubGraphMetadata": _fields(
        "name:string",
        "description:string",
        "input_tensor_metadata:tables:TensorMetadata",
        "output_tensor_metadata:tables:TensorMetadata",
        "associated_files:tables:AssociatedFile",
        "input_process_units:tables:ProcessUnit",
        "output_process_units:tables:ProcessUnit",
    ),
    "ModelMetadata": _fields(
        "name:string",
        "description:string",
        "version:string",
        "subgraph_metadata:tables:SubGraphMetadata",
        "author:string",
        "license:string",
        "associated_files:tables:AssociatedFile",
        "min_parser_version:string",
    ),
}
ROOT = "ModelMetadata"


def _vector(builder: flatbuffers.Builder, items: Sequence[Any], prepend: str, size: int = 4) -> int:
    builder.StartVector(size, len(items), size)
    for item in reversed(items):
        getattr(builder, prepend)(item)
    return builder.EndVector()


def _member(value: Mapping[str, Any], field: Field, path: str) -> str:
    member = value.get(f"{field.name}_type")
    if member not in UNIONS[field.ref][1:] or member not in TABLES:
        raise ValueError(f"{path}.{field.name}_type must name a {field.ref} table. Received {member!r}")
    return member


def _encode(builder: flatbuffers.Builder, table: str, value: Mapping[str, Any], path: str) -> int:
    fields = TABLES[table]
    unknown = sorted(set(value) - {field.name for field in fields})
    if unknown:
        raise ValueError(f"{path} ({table}) has no field {', '.join(unknown)}")
    # Children first: a flatbuffer table can only point at objects built before it.
    offsets: dict[str, int] = {}
    for field in fields:
        if field.name not in value:
            continue
        item, where = value[field.name], f"{path}.{field.name}"
        if field.kind == "string":
            offsets[field.name] = builder.CreateString(str(item))
        elif field.kind == "strings":
            strings = [builder.CreateString(str(text)) for text in item]
            offsets[field.name] = _vector(builder, strings, "PrependUOffsetTRelative")
        elif field.kind == "floats":
            offsets[field.name] = _vector(builder, [float(x) for x in item], "PrependFloat32")
        elif field.kind == "table":
            offsets[field.name] = _encode(builder, field.ref, item, where)
        elif field.kind == "tables":
            tables = [_encode(builder, field.ref, one, f"{where}[{i}]") for i, one in enumerate(item)]
            offsets[field.name] = _vector(builder, tables, "PrependUOffsetTRelative")
        elif field.kind == "union":
            offsets[field.name] = _encode(builder, _member(value, field, path), item, where)
    builder.StartObject(len(fields))
    for slot, field in enumerate(fields):
        if field.name not in value:
            continue
        item = value[field.name]
        if field.name in offsets:
            builder.PrependUOffsetTRelativeSlot(slot, offsets[field.name], 0)
        elif field.kind in ("enum", "union_type"):
            names = ENUMS[field.ref] if field.kind == "enum" else UNIONS[field.ref]
            if item not in names:
                raise ValueError(f"{path}.{field.name} must be one of {', '.join(names)}. Received {item!r}")
            builder.PrependUint8Slot(slot, names.index(item), 0)
        elif field.kind == "uint":
            builder.PrependUint32Slot(slot, int(item), 0)
        elif field.kind == "int":
            builder.PrependInt32Slot(slot, int(item), 0)
    return builder.EndObject()


def encode(metadata: Mapping[str, Any]) -> bytes:
    """A ``ModelMetadata`` flatbuffer (identifier ``M001``) from its JSON shape.

    Args:
        metadata: the metadata as MediaPipe's displayer prints it, e.g.
            ``{"name": ..., "subgraph_metadata": [{"input_tensor_metadata": [...]}]}``.

    Raises:
        ValueError: a field the schema does not have, or an enum or union member it does not know.
    """
    builder = flatbuffers.Builder(1024)
    builder.Finish(_encode(builder, ROOT, metadata, ROOT), file_identifier=METADATA_IDENTIFIER)
    return bytes(builder.Output())


def _decode(buf: bytes, position: int, table: str) -> dict[str, Any]:
    view = Table(buf, position)
    out: dict[str, Any] = {}
    for slot, field in enumerate(TABLES.get(table, ())):
        offset = view.Offset(4 + 2 * slot)
        if not offset:
            continue
        at = view.Pos + offset
        if field.kind == "string":
            out[field.name] = view.String(at).decode("utf-8")
        elif field.kind in ("strings", "floats", "tables"):
            start, count = view.Vector(offset), view.VectorLen(offset)
            if field.kind == "floats":
                out[field.name] = [float(view.Get(number_types.Float32Flags, start + 4 * i)) for i in range(count)]
            elif field.kind == "strings":
                out[field.name] = [view.String(start + 4 * i).decode("utf-8") for i in range(count)]
            else:
                out[field.name] = [_decode(buf, view.Indirect(start + 4 * i), field.ref) for i in range(count)]
        elif field.kind == "table":
            out[field.name] = _decode(buf, view.Indirect(at), field.ref)
        elif field.kind == "enum":
            out[field.name] = ENUMS[field.ref][view.Get(number_types.Uint8Flags, at)]
        elif field.kind == "union_type":
            out[field.name] = UNIONS[field.ref][view.Get(number_types.Uint8Flags, at)]
        elif field.kind == "union":
            member = Table(bytearray(), 0)
            view.Union(member, offset)
            out[field.name] = _decode(buf, member.Pos, out.get(f"{field.name}_type", "NONE"))
        elif field.kind == "uint":
            out[field.name] = int(view.Get(number_types.Uint32Flags, at))
        elif field.kind == "int":
            out[field.name] = int(view.Get(number_types.Int32Flags, at))
    return out


def decode(metadata_buffer: bytes) -> dict[str, Any]:
    """The JSON shape of a ``ModelMetadata`` flatbuffer (fields the schema above does not list are left out).

    Raises:
        ValueError: the buffer is not an ``M001`` metadata flatbuffer.
    """
    buf = bytes(metadata_buffer)
    if len(buf) < 8 or buf[4:8] != METADATA_IDENTIFIER:
        raise ValueError(f"not a TFLite metadata buffer: identifier {buf[4:8]!r}, expected {METADATA_IDENTIFIER!r}")
    return _decode(buf, flatbuffers.encode.Get(number_types.UOffsetTFlags.packer_type, buf, 0), ROOT)


def _model(model_bytes: bytes) -> Any:
    from ai_edge_litert import schema_py_generated as schema

    if len(model_bytes) < 8 or model_bytes[4:8] != MODEL_IDENTIFIER:
        raise ValueError(f"not a TFLite model: identifier {bytes(model_bytes[4:8])!r}, expected {MODEL_IDENTIFIER!r}")
    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(model_bytes, 0))


def populate(model_bytes: bytes, metadata: Mapping[str, Any], associated_files: Mapping[str, bytes]) -> bytes:
    """Embed metadata and associated files into a TFLite model.

    Args:
        model_bytes: a converted ``.tflite`` flatbuffer (any metadata or packed files it has are replaced).
        metadata: the metadata's JSON shape (:func:`encode`); ``min_parser_version`` is set when absent.
        associated_files: file name -> contents, packed in name order as a zip after the model.

    Returns:
        The model with its ``TFLITE_METADATA`` buffer and the files (still a valid ``.tflite``).

    Raises:
        ValueError: ``model_bytes`` is not a TFLite model, the metadata does not fit the schema,
            or the metadata names an associated file that is not given (or the other way round).
    """
    from ai_edge_litert import schema_py_generated as schema

    metadata = {**metadata, "min_parser_version": metadata.get("min_parser_version", MIN_PARSER_VERSION)}
    named, given = set(associated_file_names(metadata)), set(associated_files)
    if named != given:
        raise ValueError(f"the metadata names associated files {sorted(named)} but {sorted(given)} were given to pack")
    model = _model(model_bytes)
    buffer = schema.BufferT()
    buffer.data = list(encode(metadata))
    model.buffers = list(model.buffers or [])
    model.metadata = [entry for entry in (model.metadata or []) if _entry_name(entry) != METADATA_NAME]
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(model_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=MODEL_IDENTIFIER)
    out = io.BytesIO()
    out.write(builder.Output())
    if associated_files:
        with zipfile.ZipFile(out, "a") as archive:
            for name in sorted(associated_files):
                archive.writestr(zipfile.ZipInfo(name, date_time=_ZIP_TIME), associated_files[name])
    return out.getvalue()


def _entry_name(entry: Any) -> str:
    name = entry.name
    return name.decode("utf-8") if isinstance(name, bytes) else str(name or "")


def associated_file_names(metadata: Mapping[str, Any]) -> list[str]:
    """Every associated file the metadata names, at any depth, in order of appearance."""
    names: list[str] = []

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, Mapping):
            for child_key, child in node.items():
                walk(child, child_key)
        elif isinstance(node, list):
            for child in node:
                if key == "associated_files" and isinstance(child, Mapping) and child.get("name") not in names:
                    names.append(str(child.get("name")))
                walk(child)

    walk(metadata)
    return names


def read_metadata(model_bytes: bytes) -> dict[str, Any]:
    """The metadata embedded in a model, its packed files and its output labels.

    Args:
        model_bytes: a ``.tflite`` model.

    Returns:
        ``{"metadata": <the metadata's JSON shape, {} when there is none>,
        "associated_files": [packed file names, sorted], "labels": [lines of the
        first output's TENSOR_AXIS_LABELS file, [] when there is none]}``.

    Raises:
        ValueError: ``model_bytes`` is not a TFLite model.
    """
    model = _model(bytes(model_bytes))
    entries = [entry for entry in (model.metadata or []) if _entry_name(entry) == METADATA_NAME]
    if not entries:
        return {"metadata": {}, "associated_files": [], "labels": []}
    metadata = decode(bytes(bytearray(model.buffers[entries[0].buffer].data)))
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
            packed = {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        packed = {}
    labels: list[str] = []
    for subgraph in metadata.get("subgraph_metadata", [])[:1]:
        for tensor in subgraph.get("output_tensor_metadata", [])[:1]:
            for associated in tensor.get("associated_files", []):
                if associated.get("type") == "TENSOR_AXIS_LABELS" and associated.get("name") in packed:
                    text = packed[associated["name"]].decode("utf-8")
                    labels = [line for line in text.splitlines() if line.strip()]
                    break
    return {"metadata": metadata, "associated_files": sorted(packed), "labels": labels}
