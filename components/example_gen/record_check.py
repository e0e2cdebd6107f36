"""ExampleGen's data-quality step: read each input file, check each photo, drop the unusable ones.

:class:`ReadAndCheckFile` is a Beam DoFn over input file paths (one element
per file, so on Dataflow the files spread over the workers). It reads the
file's TFRecords itself (:func:`read_tfrecords`) so it knows each record's
file and index, and a truncated or corrupt file fails with the file, the
record index and the byte offset instead of a hex dump. Every photo is
decoded the way Transform will (TensorFlow, to grayscale); one that does not
decode or is under the contract's minimum side is dropped, counted by reason
(Beam counters ``shelf_audit/dropped: <reason>``) and described with its file,
index, split, lane, device and capture time. The split of a record is the one
TFX's ExampleGen partition gives it (the same hash function).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from shelf_data import bad_records, contract

GZIP_MAGIC = b"\x1f\x8b"
COUNTS_TAG = "counts"
BAD_TAG = "bad"


class CorruptRecordFileError(ValueError):
    """A TFRecord file is truncated or corrupt (the message names the file, record index and byte offset)."""


def _crc32c(data: bytes) -> int:
    try:
        import google_crc32c

        return google_crc32c.value(data)
    except ImportError:  # pragma: no cover - google-crc32c ships with the Google Cloud clients
        import crcmod.predefined

        return crcmod.predefined.mkPredefinedCrcFun("crc-32c")(data)


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C of ``data``."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _open(path: str) -> Any:
    """A binary stream of ``path`` (any tf.io.gfile filesystem), gunzipped when the file is gzip."""
    import tensorflow as tf

    raw = tf.io.gfile.GFile(path, "rb")
    head = raw.read(2)
    raw.seek(0)
    return gzip.GzipFile(fileobj=raw, mode="rb") if head == GZIP_MAGIC else raw


def read_tfrecords(path: str, name: str | None = None) -> Iterator[tuple[int, int, bytes]]:
    """``(index, offset, record)`` of every record of a TFRecord file (gzip or plain, detected by content).

    ``offset`` is the record's byte offset in the (uncompressed) record stream. ``name`` is how errors name the
    file (default ``path``).

    Raises:
        CorruptRecordFileError: the file ends inside a record, a length or data checksum does not match,
            or the gzip stream is broken; the message names the file, the record index and the byte offset.
    """
    name = name or path
    offset = index = 0
    where = ""
    with _open(path) as f:
        while True:
            where = f"{name}: record {index} at byte {offset}"
            try:
                header = f.read(12)
                if not header:
                    return
                if len(header) < 12:
                    raise CorruptRecordFileError(
                        f"{where}: the file ends inside the record header ({len(header)} of 12 bytes): truncated file"
                    )
                length_bytes, length_crc = header[:8], struct.unpack("<I", header[8:])[0]
                if masked_crc32c(length_bytes) != length_crc:
                    raise CorruptRecordFileError(f"{where}: the record length's checksum does not match: corrupt file")
                (length,) = struct.unpack("<Q", length_bytes)
                data = f.read(length)
                footer = f.read(4)
                if len(data) < length or len(footer) < 4:
                    got = len(data) + len(footer)
                    raise CorruptRecordFileError(
                        f"{where}: the file ends inside the record ({got} of {length + 4} bytes after the header): "
                        "truncated file"
                    )
                if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                    raise CorruptRecordFileError(f"{where}: the record's data checksum does not match: corrupt file")
            except (EOFError, zlib.error, gzip.BadGzipFile) as e:
                raise CorruptRecordFileError(
                    f"{where}: the gzip stream is broken ({e}): truncated or corrupt file"
                ) from None
            yield index, offset, data
            offset += 16 + length
            index += 1


def _error_detail(error: Exception) -> str:
    """The one informative line of a TensorFlow error ("Unknown image file format ..."), without the graph dump."""
    lines = [line.strip() for line in str(error).splitlines()]
    useful = [
        line
        for line in lines
        if line and not line.startswith(("Graph execution error", "Detected at node", "File ", "[[", "{{"))
    ]
    text = useful[-1] if useful else (lines[0] if lines else type(error).__name__)
    return text.split("\t [[")[0].split(" [[")[0].strip()[:120]


class ImageChecker:
    """Decodes photos the way Transform does (TensorFlow, grayscale) and says why one is unusable."""

    def __init__(self) -> None:
        import tensorflow as tf

        self._tf = tf

        @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
        def decoded_shape(encoded: tf.Tensor) -> tf.Tensor:
            return tf.shape(tf.io.decode_image(encoded, channels=1, expand_animations=False))

        self._decoded_shape = decoded_shape

    def problem(self, encoded: bytes) -> tuple[str, str]:
        """``(reason, detail)`` of an unusable photo (reasons from :mod:`shelf_data.bad_records`), or ``("", "")``."""
        if not encoded:
            return bad_records.NO_IMAGE, "image/encoded is empty"
        try:
            shape = self._decoded_shape(self._tf.constant(encoded)).numpy()
        except (self._tf.errors.InvalidArgumentError, ValueError) as e:
            return bad_records.DOES_NOT_DECODE, _error_detail(e)
        return _size_problem(shape)

    def problems(self, encoded: list[bytes]) -> list[tuple[str, str]]:
        """:meth:`problem` of many photos: decoded in parallel by tf.data (the same decoder), one pass.

        A photo that fails there is checked again alone, for the error's text.
        """
        tf = self._tf
        shapes: dict[int, Any] = {}
        present = [i for i, data in enumerate(encoded) if data]
        if present:
            dataset = tf.data.Dataset.from_tensor_slices(
                (tf.constant(present, tf.int64), tf.constant([encoded[i] for i in present], tf.string))
            )
            dataset = dataset.map(
                lambda i, data: (i, self._decoded_shape(data)),
                num_parallel_calls=tf.data.AUTOTUNE,
            ).ignore_errors()
            shapes = {int(i): shape for i, shape in dataset.as_numpy_iterator()}
        return [_size_problem(shapes[i]) if i in shapes else self.problem(data) for i, data in enumerate(encoded)]


def _size_problem(shape: Any) -> tuple[str, str]:
    side = contract.MIN_IMAGE_SIDE
    if min(shape[0], shape[1]) < side:
        return bad_records.TOO_SMALL, f"{shape[1]}x{shape[0]}, below {side}x{side}"
    return "", ""


def _first(feature: Any) -> str:
    values = list(feature.int64_list.value) or [v.decode("utf-8", "replace") for v in feature.bytes_list.value]
    return str(values[0]) if values else ""


def relative_name(path: str, input_base: str) -> str:
    """``path`` relative to ``input_base`` (``span-1/part-0.tfrecord.gz``), or ``path`` when outside it."""
    base = input_base.rstrip("/") + "/"
    return path[len(base) :] if path.startswith(base) else path


class ReadAndCheckFile(beam.DoFn):
    """One input file -> its usable ``tf.train.Example`` records; dropped records and counts as side outputs.

    Outputs: main, the kept examples; ``bad``, one dict per dropped record (the fields of
    :mod:`shelf_data.bad_records`); ``counts``, one ``{"read": {split: n}, "labels": {split: {label: n}}}``
    per file (records read per split, and kept records per split and label value).
    """

    def __init__(self, input_base: str, split_names: list[str], buckets: list[int], split_config: bytes):
        self._input_base = input_base
        self._split_names = split_names
        self._buckets = buckets
        self._split_config_bytes = split_config
        self._checker: ImageChecker | None = None
        self._split_config: Any = None

    def setup(self) -> None:
        """Build the image decoder and the split config once per worker."""
        from tfx.proto import example_gen_pb2

        self._checker = ImageChecker()
        self._split_config = example_gen_pb2.SplitConfig.FromString(self._split_config_bytes)

    def process(self, path: str) -> Iterator[Any]:
        """Read and check one file (see the class docstring)."""
        import tensorflow as tf
        from google.protobuf.message import DecodeError
        from tfx.components.example_gen.base_example_gen_executor import _PartitionFn

        if self._checker is None:
            self.setup()
        name = relative_name(path, self._input_base)
        read = {s: 0 for s in self._split_names}
        labels: dict[str, dict[str, int]] = {s: {} for s in self._split_names}
        examples = []
        for index, offset, raw in read_tfrecords(path, name):
            try:
                examples.append((index, tf.train.Example.FromString(raw)))
            except DecodeError as e:
                raise CorruptRecordFileError(
                    f"{name}: record {index} at byte {offset} is not a tf.train.Example ({e})"
                ) from None
        # Every photo of the file decoded in one parallel pass; a missing image feature is a schema
        # anomaly (ExampleValidator and DataGate stop it), not a bad record: None is not checked.
        photos = [_photo(example) for _, example in examples]
        checked = iter(self._checker.problems([p for p in photos if p is not None]))
        for (index, example), photo in zip(examples, photos, strict=True):
            reason, detail = next(checked) if photo is not None else ("", "")
            split = self._split_names[_PartitionFn(example, len(self._buckets), self._buckets, self._split_config)]
            read[split] += 1
            features = example.features.feature
            if reason:
                beam.metrics.Metrics.counter("shelf_audit", f"dropped: {reason}").inc()
                record = {"file": name, "index": index, "split": split, "reason": reason, "detail": detail}
                for key in (contract.LANE_KEY, contract.DEVICE_KEY, contract.CAPTURED_AT_KEY):
                    record[key] = _first(features[key]) if key in features else ""
                yield beam.pvalue.TaggedOutput(BAD_TAG, record)
                continue
            label = _first(features[contract.LABEL_KEY]) if contract.LABEL_KEY in features else ""
            if label.isdigit() and int(label) < len(contract.LABELS):
                label = contract.LABELS[int(label)]
            labels[split][label] = labels[split].get(label, 0) + 1
            yield example
        beam.metrics.Metrics.counter("shelf_audit", "records read").inc(sum(read.values()))
        yield beam.pvalue.TaggedOutput(COUNTS_TAG, {"read": read, "labels": labels})


def _photo(example: Any) -> bytes | None:
    """The example's encoded photo (``b""`` when the feature is empty), None without the feature."""
    features = example.features.feature
    if contract.IMAGE_KEY not in features:
        return None
    images = features[contract.IMAGE_KEY].bytes_list.value
    return images[0] if images else b""


def merge_counts(parts: list[dict]) -> dict:
    """Sum per-file ``counts`` outputs of :class:`ReadAndCheckFile`."""
    read: dict[str, int] = {}
    labels: dict[str, dict[str, int]] = {}
    for part in parts:
        for split, n in part["read"].items():
            read[split] = read.get(split, 0) + n
        for split, by_label in part["labels"].items():
            into = labels.setdefault(split, {})
            for label, n in by_label.items():
                into[label] = into.get(label, 0) + n
    return {"read": read, "labels": labels}


def write_report(
    _: Any,
    examples_uri: str,
    input_base: str,
    max_bad_fraction: float,
    split_names: list[str],
    dropped: list[dict],
    counts: list[dict],
) -> str:
    """Write ``bad_records.json`` (plus ``labels``: kept records per split and label) for the Examples artifact."""
    merged = merge_counts(counts)
    report = bad_records.build_report(input_base, max_bad_fraction, merged["read"], dropped, split_names)
    report["labels"] = {s: dict(sorted(merged["labels"].get(s, {}).items())) for s in split_names}
    return bad_records.write_bad_records(examples_uri, report)
