"""Exports of sequence shards to the formats other trainers read: MosaicML MDS and Megatron-LM indexed datasets.

`base` says what a format is and finds them: every module of `formats/` that defines `FORMAT` (one module per
format, its library imported only when it writes, so the base install stays free of `mosaicml-streaming` and
`megatron-core`). `source` reads the sequence shards batch by batch, `record` owns the export's manifest and how
an export reaches its place, `run` ties them to a format's writer, and `megatron_dataset` reads a Megatron export
back for masked-LM training with the whole-word collator.
"""
