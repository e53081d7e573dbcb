"""`tfmodel-log-to-warmup`: a request log -> the next version's warmup file.

    python -m tfmodel_server.servables.tensorflow.log_to_warmup \\
        LOG [LOG ...] --version_dir /models/linear/3 [--max_records 100] [--model_name linear]

LOG is a log file, a directory of them, or a writer's path prefix (its files,
in the order written). The records are the warmup file's format already
(PredictionLog in TFRecord); this keeps the first N replayable ones (the server
refuses a warmup file of more than 1000), drops their responses and metadata
unless --keep_responses (warmup only sends requests), and writes
<version_dir>/assets.extra/tf_serving_warmup_requests (or --output). Write into
a staging copy of the version and move it into the model's base path, so the
server never sees a version without its warmup file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from tensorflow_serving.apis import prediction_log_pb2

from tfmodel_server.servables.tensorflow.prediction_log_files import log_files, read_records
from tfmodel_server.servables.tensorflow.warmup import MAX_NUM_RECORDS, warmup_file

log = logging.getLogger(__name__)

# What warmup.py replays; predict_streamed_log / session_run_log are skipped.
REPLAYABLE = ("predict_log", "classify_log", "regress_log", "multi_inference_log")


def _model_of(record: prediction_log_pb2.PredictionLog) -> str:
    if record.HasField("log_metadata"):
        return record.log_metadata.model_spec.name
    kind = record.WhichOneof("log_type")
    if kind == "multi_inference_log":
        tasks = record.multi_inference_log.request.tasks
        return tasks[0].model_spec.name if tasks else ""
    return getattr(record, kind).request.model_spec.name if kind else ""


def _for_warmup(record: prediction_log_pb2.PredictionLog, keep_responses: bool) -> bytes:
    if not keep_responses:
        record.ClearField("log_metadata")
        kind = record.WhichOneof("log_type")
        getattr(record, kind).ClearField("response")
    return record.SerializeToString()


def convert(
    sources: list[str],
    output: str,
    max_records: int = MAX_NUM_RECORDS,
    model_name: str = "",
    keep_responses: bool = False,
) -> int:
    """Write up to `max_records` replayable records of `sources` to `output`; returns
    how many. ValueError when there are none (an empty warmup file helps no one)."""
    import tensorflow as tf

    files = log_files(sources)
    if not files:
        raise ValueError(f"no request log files found at {', '.join(sources)}")
    kept: list[bytes] = []
    skipped = 0
    for path in files:
        for raw in read_records(path):
            if len(kept) >= max_records:
                break
            record = prediction_log_pb2.PredictionLog()
            try:
                record.ParseFromString(raw)
            except Exception:
                skipped += 1
                continue
            if record.WhichOneof("log_type") not in REPLAYABLE or (
                model_name and _model_of(record) != model_name
            ):
                skipped += 1
                continue
            kept.append(_for_warmup(record, keep_responses))
        if len(kept) >= max_records:
            break
    if not kept:
        raise ValueError(
            f"none of the {skipped} records in {len(files)} file(s) can be replayed"
            + (f" for model {model_name!r}" if model_name else "")
        )
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    temporary = output + ".tmp"
    with tf.io.TFRecordWriter(temporary) as writer:
        for data in kept:
            writer.write(data)
    os.replace(temporary, output)  # a reader sees the old file or the whole new one
    if skipped:
        log.info("skipped %d records (not replayable or another model)", skipped)
    return len(kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tfmodel-log-to-warmup",
        description="Turn a tfmodel request log (PredictionLog TFRecords) into a "
        "SavedModel warmup file (assets.extra/tf_serving_warmup_requests).",
    )
    parser.add_argument("logs", nargs="+", help="log files, directories or writer prefixes")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--version_dir", help="write <dir>/assets.extra/tf_serving_warmup_requests")
    target.add_argument("--output", help="write this file")
    parser.add_argument(
        "--max_records",
        type=int,
        default=MAX_NUM_RECORDS,
        help=f"keep the first N records (default and most the server accepts: {MAX_NUM_RECORDS})",
    )
    parser.add_argument("--model_name", default="", help="only this model's records")
    parser.add_argument(
        "--keep_responses", action="store_true", help="keep responses and log metadata"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.max_records <= MAX_NUM_RECORDS:
        parser.error(f"--max_records must be in 1..{MAX_NUM_RECORDS}, got {args.max_records}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    output = args.output or warmup_file(args.version_dir)
    try:
        count = convert(args.logs, output, args.max_records, args.model_name, args.keep_responses)
    except (ValueError, OSError) as e:
        print(f"tfmodel-log-to-warmup: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {count} warmup records to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
