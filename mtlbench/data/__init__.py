"""UTKFace data: scan a folder or an archive, parse names, decode once into a cache, split.

Importing this package never imports torch; only :mod:`mtlbench.data.batches` does.
"""

from mtlbench.data.dataset import DecodedDataset, load_dataset
from mtlbench.data.errors import DataError, Skipped
from mtlbench.data.inspection import DatasetInspection, inspect_dataset
from mtlbench.data.names import GENDER_NAMES, RACE_NAMES, Labels, parse_name
from mtlbench.data.normalize import IMAGENET_MEAN, IMAGENET_STD
from mtlbench.data.split import Split, split_indices, subsample
from mtlbench.data.synthetic import make_synthetic_folder, write_faces

__all__ = [
    "GENDER_NAMES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RACE_NAMES",
    "DataError",
    "DatasetInspection",
    "DecodedDataset",
    "Labels",
    "Skipped",
    "Split",
    "inspect_dataset",
    "load_dataset",
    "make_synthetic_folder",
    "parse_name",
    "split_indices",
    "subsample",
    "write_faces",
]
