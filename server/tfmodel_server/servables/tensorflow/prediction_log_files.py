"""PredictionLog TFRecord files: the request log's rotating writer and its reader.

The request log and the warmup file (assets.extra/tf_serving_warmup_requests)
are the same format, a TFRecord of serialized tensorflow.serving.PredictionLog,
so a log can become the next version's warmup file as it is.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)

FILE_SUFFIX = ".tfrecord"
# A TFRecord frames each record with an 8-byte length, its 4-byte CRC and a 4-byte data CRC.
RECORD_FRAMING_BYTES = 16


def log_file_pattern(prefix: str) -> str:
    """The files a writer with this path prefix makes (glob)."""
    return f"{prefix}-*{FILE_SUFFIX}"


class RotatingRecordWriter:
    """Appends records to `<prefix>-<UTC start>-<pid>-<seq>.tfrecord`, starting a new
    file once the current one would pass `max_file_bytes`.

    The pid keeps the files of several --workers processes apart; the names sort in
    the order they were written (per process). Not thread-safe: one writer thread
    owns it.
    """

    def __init__(self, prefix: str, max_file_bytes: int) -> None:
        self.prefix = prefix
        self.max_file_bytes = max(1, max_file_bytes)
        self._writer = None
        self._size = 0
        self._seq = 0
        self.path = ""

    def write(self, record: bytes) -> int:
        """Write one record; returns the bytes it took in the file. OSError on failure."""
        framed = len(record) + RECORD_FRAMING_BYTES
        if self._writer is not None and self._size + framed > self.max_file_bytes:
            self.close()
        if self._writer is None:
            self._open()
        assert self._writer is not None
        self._writer.write(record)
        self._size += framed
        return framed

    def _open(self) -> None:
        import tensorflow as tf

        directory = os.path.dirname(self.prefix)
        if directory:
            os.makedirs(directory, exist_ok=True)
        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.path = f"{self.prefix}-{stamp}-{os.getpid()}-{self._seq:05d}{FILE_SUFFIX}"
        try:
            self._writer = tf.io.TFRecordWriter(self.path)
        except tf.errors.OpError as e:
            raise OSError(f"cannot open request log file {self.path}: {e.message}") from None
        self._size = 0

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()


def log_files(paths: list[str]) -> list[str]:
    """Files named by `paths`: a file as it is, a directory's *.tfrecord files, or a
    writer prefix's files; each group in name order (the order written)."""
    found: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found.extend(
                sorted(glob.glob(os.path.join(path, "**", "*" + FILE_SUFFIX), recursive=True))
            )
        elif os.path.exists(path):
            found.append(path)
        else:
            found.extend(sorted(glob.glob(log_file_pattern(path))))
    return found


def read_records(path: str) -> Iterator[bytes]:
    """The records of one TFRecord file. A truncated last record (a file still being
    written) ends the file with a warning; other corruption raises OSError."""
    import tensorflow as tf

    try:
        yield from tf.compat.v1.io.tf_record_iterator(path)
    except tf.errors.DataLossError as e:
        log.warning("%s: stopped at a damaged or partly written record: %s", path, e.message)
    except tf.errors.OpError as e:
        raise OSError(f"cannot read {path}: {e.message}") from None
