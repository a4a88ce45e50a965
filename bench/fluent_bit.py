"""Fluent Bit, for side-by-side benchmarks only (never a test or CI step): where to find it and
the tuned configuration the comparisons use.

Found as ``$FLUENT_BIT``, else ``fluent-bit`` on PATH, else ``../shared/tools/fluent-bit`` next
to this checkout; a benchmark that finds none prints that its row did not run.

The tuned configuration: ``[INPUT] tail`` with ``buffer_chunk_size 1M``, ``buffer_max_size 4M``,
``mem_buf_limit 512M``, ``parser json`` and a ``db`` file; ``[OUTPUT] es`` with
``write_operation create``, ``suppress_type_name on``, ``buffer_size false``, ``workers 2``;
``[SERVICE] flush 1``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["find", "write_config"]

HERE = Path(__file__).resolve().parent


def find() -> str | None:
    """The Fluent Bit binary, or None."""
    given = os.environ.get("FLUENT_BIT")
    if given and os.access(given, os.X_OK):
        return given
    on_path = shutil.which("fluent-bit")
    if on_path:
        return on_path
    beside = HERE.parent.parent / "shared" / "tools" / "fluent-bit"
    return str(beside) if os.access(beside, os.X_OK) else None


def write_config(work: Path, log: Path, port: int, *, tuned: bool = True) -> Path:
    """A configuration tailing *log* from its start into the sink on *port*; its path."""
    work.mkdir(parents=True, exist_ok=True)
    parsers = work / "parsers.conf"
    parsers.write_text("[PARSER]\n    Name json\n    Format json\n")
    tail = (
        "    Parser json\n    Buffer_Chunk_Size 1M\n    Buffer_Max_Size 4M\n    Mem_Buf_Limit 512M\n"
        if tuned
        else "    Refresh_Interval 1\n"
    )
    output = (
        "    Write_Operation create\n    Buffer_Size False\n    Workers 2\n    Retry_Limit False\n" if tuned else ""
    )
    conf = work / "fluent-bit.conf"
    conf.write_text(
        f"""[SERVICE]
    Flush 1
    Log_Level error
    Parsers_File {parsers}
[INPUT]
    Name tail
    Path {log}
    Read_from_Head On
    DB {work / "fluent-bit.db"}
{tail}[OUTPUT]
    Name es
    Match *
    Host 127.0.0.1
    Port {port}
    Index logs-amebo-default
    Suppress_Type_Name On
{output}"""
    )
    return conf
