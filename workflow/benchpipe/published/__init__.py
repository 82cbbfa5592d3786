"""MLCommons' published results as data: the ``published`` table (``benchpipe published import``).

    summary.py    the inference checker's summary.csv and the training result summarizer's
                  summary.json, read row by row into the table's columns, each bad row named
    table.py      the table's schema, and its folder: one Parquet file per imported source,
                  partitioned by round, with each import's report beside it
"""
