"""Export run directories' metrics as TensorBoard scalars, to see labkit runs beside TRL's.

    python -m labkit export-tb runs/sft runs/rl --out runs/tb   # then: tensorboard --logdir runs/tb

Each metric line of a run's metrics.jsonl (step, split, metric, value, wall_time, ...) becomes one scalar,
tagged `split/metric` (e.g. `test_target/pass@1`), in DIR/<run>/events.out.tfevents.labkit. Runs are named by
their path below the runs' common parent (`e4/fine/s0` and `e4/coarse/s0` -> `fine/s0`, `coarse/s0`).

metrics.jsonl stays the source of truth: every export rewrites each run's event file from scratch (written
beside it, then renamed over it), so exporting again, after a resume or twice, never duplicates a step, and the
same metrics give the same bytes. Within a run, scalars go out sorted by step (TensorBoard drops data it
reads out of step order) and a (tag, step) logged twice keeps its last value. TensorBoard's wall-time axis
puts a run's first point at its config.json's time and spaces the points by the run's own `wall_time`
(training seconds, summed over resumed sessions). A run still being written is exported up to its last
complete line, and the export says so.

The event file is written here, not by torch's or tensorboard's writer: the format (TFRecord frames of
`Event` protocol buffers, each framed with masked CRC-32C checksums) is small and stable, and this keeps the
export free of both packages and deterministic. tests/test_export_tb.py reads the files back with
tensorboard's own EventAccumulator.
"""
from __future__ import annotations

import dataclasses
import os
import struct
import tempfile
from pathlib import Path

from labkit.config import UserError
from labkit.runs import read_jsonl

EVENT_FILE = "events.out.tfevents.labkit"  # TensorBoard reads files whose name contains "tfevents"
_TMP = ".labkit-export.tmp"  # without "tfevents": TensorBoard must not read a half-written export
NOT_A_RUN = ("a run directory is what a training stage writes with --out: config.json, metrics.jsonl and "
             "checkpoints/ (make one with e.g. `python -m labkit sft --preset smoke --out runs/sft-smoke`)")


@dataclasses.dataclass
class ExportConfig:
    out_dir: str = "runs/tb"   # one subdirectory per run; point `tensorboard --logdir` here


CONFIG = ExportConfig
CLI_ALIASES = {"--out": "out_dir"}


def add_arguments(parser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories (each with metrics.jsonl)")


def run_cli(cfg: ExportConfig, args) -> int:
    for line in export(args.runs, cfg.out_dir):
        print(line)
    return 0


# --- reading -------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Scalars:
    """What one run's metrics.jsonl gives: scalars sorted by step, and what was left out and why."""
    events: list[tuple[float, int, str, float]]  # (wall_time, step, tag, value)
    in_progress: bool = False   # the last line had no newline yet: a run still being written
    unreadable: int = 0         # complete lines that are not a metric record
    duplicates: int = 0         # (tag, step) pairs logged more than once: the last value kept


def read_scalars(run: str | Path) -> Scalars:
    """A run's metric lines as scalars, up to its last complete line (raises UserError if not a run)."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        why = "no such directory" if not Path(run).exists() else "no metrics.jsonl in it"
        raise UserError(f"{run} is not a run directory ({why}); {NOT_A_RUN}")
    data = path.read_bytes()  # one snapshot: a live trainer may append while we read
    complete = data[:data.rfind(b"\n") + 1]
    with tempfile.TemporaryDirectory() as tmp:  # read_jsonl reads paths: hand it the complete lines only
        snapshot = Path(tmp) / "metrics.jsonl"
        snapshot.write_bytes(complete)
        records = read_jsonl(snapshot)
    lines = sum(1 for line in complete.splitlines() if line.strip())
    out = Scalars([], in_progress=len(complete) < len(data), unreadable=lines - len(records))
    latest: dict[tuple[str, int], tuple[float, int, str, float]] = {}
    for r in records:
        try:
            step, value = int(r["step"]), float(r["value"])
            tag = f"{r['split']}/{r['metric']}" if r.get("split") else str(r["metric"])
            wall = float(r.get("wall_time") or 0.0)
        except (KeyError, TypeError, ValueError):
            out.unreadable += 1
            continue
        out.duplicates += (tag, step) in latest
        latest.pop((tag, step), None)  # re-inserted: the pair takes the place of its last logging
        latest[(tag, step)] = (wall, step, tag, value)
    out.events = sorted(latest.values(), key=lambda e: e[1])  # stable: same-step scalars keep their order
    return out


# --- writing -------------------------------------------------------------------------------------------------

def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ 0x82F63B78 if n & 1 else n >> 1
        table.append(n)
    return table


_CRC_TABLE = _crc32c_table()


def _masked_crc(data: bytes) -> bytes:
    """CRC-32C (Castagnoli), masked as TFRecord frames carry it."""
    crc, table = 0xFFFFFFFF, _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 two's complement, as protobuf encodes a negative step
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (strings, bytes, nested messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int, *, file_version: str | None = None, tag: str = "",
           value: float = 0.0) -> bytes:
    """tensorboard's Event: wall_time = 1 (double), step = 2 (int64), file_version = 3, summary = 5, where
    Summary.value = 1 holds Value{tag = 1, simple_value = 2 (float)}."""
    msg = b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(step)
    if file_version is not None:
        return msg + _field(3, file_version.encode())
    value_msg = _field(1, tag.encode()) + b"\x15" + struct.pack("<f", value)
    return msg + _field(5, _field(1, value_msg))


def _record(data: bytes) -> bytes:
    """One TFRecord frame: length, its masked CRC, the data, its masked CRC."""
    length = struct.pack("<Q", len(data))
    return length + _masked_crc(length) + data + _masked_crc(data)


def write_events(path: str | Path, events: list[tuple[float, int, str, float]], start: float = 0.0) -> None:
    """Write (wall_time, step, tag, value) scalars as a new event file at `path`, replacing it atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(_TMP)
    with open(tmp, "wb") as f:
        f.write(_record(_event(start, 0, file_version="brain.Event:2")))
        for wall, step, tag, value in events:
            f.write(_record(_event(start + wall, step, tag=tag, value=value)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --- the export ----------------------------------------------------------------------------------------------

def run_names(runs: list[str | Path]) -> list[str]:
    """Each run's path below the runs' common parent (its own name when alone)."""
    paths = [Path(r).resolve() for r in runs]
    common = Path(os.path.commonpath([p.parent for p in paths]))
    return [p.relative_to(common).as_posix() for p in paths]


def export(runs: list[str | Path], out_dir: str | Path) -> list[str]:
    """Export every run (all checked before anything is written); returns one report line per run."""
    unique: dict[Path, str] = {}
    for r in runs:  # each run once, in the order given
        unique.setdefault(Path(r).resolve(), str(r))
    runs = list(unique.values())
    scalars = [read_scalars(r) for r in runs]
    report = []
    for run, name, s in zip(runs, run_names(runs), scalars):
        config = Path(run) / "config.json"
        start = config.stat().st_mtime if config.exists() else 0.0
        target = Path(out_dir) / name / EVENT_FILE
        write_events(target, s.events, start)
        steps = f", steps {s.events[0][1]}-{s.events[-1][1]}" if s.events else " (no metrics yet)"
        line = f"{run} -> {target}: {len(s.events)} scalars, {len({e[2] for e in s.events})} tags{steps}"
        if s.in_progress:
            line += "; its last line is still being written (no newline yet): exported up to the line before"
        if s.unreadable:
            line += f"; {s.unreadable} unreadable line(s) skipped"
        if s.duplicates:
            line += f"; {s.duplicates} repeated (tag, step) pair(s): the last value kept"
        report.append(line)
    return report
