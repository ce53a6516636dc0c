"""Parquet shards of a dataset split for Ray Data (``poselab shards``; no Ray here), one job per module:

* :mod:`~pose.data.shards.options`: :class:`~pose.data.shards.options.ShardOptions`, what decides a shard
  directory's content;
* :mod:`~pose.data.shards.sources`: which files a split is read from (COCO-format, MPII, AI Challenger)
  and the top-down people they give, by the file loader's readers;
* :mod:`~pose.data.shards.regions`: the image region a top-down row keeps and its encoding;
* :mod:`~pose.data.shards.writer`: :func:`~pose.data.shards.writer.write_shards` (top-down rows per
  person, bottom-up rows per image; idempotent through a fingerprint);
* :mod:`~pose.data.shards.format`: schema version, manifest, row schemas; opening, validating and
  reading shard directories (:func:`~pose.data.shards.format.open_shards`), label budgets and rank ranges;
* :mod:`~pose.data.shards.decode`: rows -> the arrays of the file loader's items
  (:class:`~pose.data.shards.decode.TopDownShardDecoder`, :func:`~pose.data.shards.decode.collate_batch`,
  bottom-up rows).

The layout is documented in ``docs/data.md``; the Ray Data pipeline is ``orchestrator/data.py``.
"""
