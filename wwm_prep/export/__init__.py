"""Exports of sequence shards to the formats other trainers read: MosaicML MDS and Megatron-LM indexed datasets.

Each format is written by its own library (`mosaicml-streaming`, `megatron-core`), imported only here and only
when asked for, so the base install stays free of both. `source` reads the sequence shards batch by batch,
`record` owns the export's manifest and how an export reaches its place, `run` ties them to a format's writer,
and `megatron_dataset` reads a Megatron export back for masked-LM training with the whole-word collator.
"""
