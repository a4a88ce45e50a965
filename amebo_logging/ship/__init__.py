"""amebo-logship: tail JSON log files into Elasticsearch, every complete line exactly once.

The data path flows one way::

    files -> tail (lines, offsets) -> batch -> bulk (per-item outcome) -> state (commit)
                                                  \\-> dead letter
"""
