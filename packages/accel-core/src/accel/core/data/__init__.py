"""Sharded data loading: each process gets its own batches of one dataset.

Example:
    >>> import torch
    >>> from accel.core.data import prepare_data_loader
    >>> loader = torch.utils.data.DataLoader(range(8), batch_size=2)
    >>> [b.tolist() for b in prepare_data_loader(loader, num_processes=2, process_index=0)]
    [[0, 1], [4, 5]]
"""

from accel.core.data.iterable import IterableDatasetShard
from accel.core.data.loaders import DataLoaderDispatcher, DataLoaderShard, SkipDataLoader
from accel.core.data.prepare import prepare_data_loader, skip_first_batches
from accel.core.data.samplers import BatchSamplerShard, SeedableRandomSampler, SkipBatchSampler
from accel.core.data.tracking import DataLoaderStateMixin, get_sampler

__all__ = [
    "BatchSamplerShard",
    "DataLoaderDispatcher",
    "DataLoaderShard",
    "DataLoaderStateMixin",
    "IterableDatasetShard",
    "SeedableRandomSampler",
    "SkipBatchSampler",
    "SkipDataLoader",
    "get_sampler",
    "prepare_data_loader",
    "skip_first_batches",
]
