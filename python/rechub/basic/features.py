"""Feature classes with torch-rechub's names and arguments.

``SparseFeature`` is an id column (integers ``0 .. vocab_size - 1``, e.g. from sklearn's
``LabelEncoder``) with an embedding table; ``DenseFeature`` a real-valued column appended after the
embeddings. ``SequenceFeature`` (pooled id sequences) is not supported by rechub's multi-task
models and is refused when built.
"""
import math
import numbers

__all__ = ["SparseFeature", "DenseFeature", "SequenceFeature"]


def _auto_embedding_dim(vocab_size):
    # torch-rechub's get_auto_embedding_dim: floor(6 * vocab_size ** 0.26).
    return int(math.floor(6 * math.pow(vocab_size, 0.26)))


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_name(name, cls):
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls}: name must be a non-empty str, got {name!r}")


class SparseFeature:
    """An id feature with an embedding table.

    Args:
        name (str): the column's name in the data (a key of the x dict / a DataFrame column).
        vocab_size (int): ids are ``0 .. vocab_size - 1``; a larger id in the data is refused
            (ValueError naming the feature and the row).
        embed_dim (int, optional): embedding width; None gives torch-rechub's automatic width
            ``floor(6 * vocab_size ** 0.26)``.
        shared_with (str, optional): the name of another SparseFeature whose embedding table this
            one uses (both must have the same vocab_size and embed_dim).
        padding_idx: not supported (rechub has no padding row); must be None.
        initializer: not supported; rechub initialises every table from N(0, 1e-4^2), which is
            torch-rechub's default ``RandomNormal(0, 0.0001)``. Must be None.
    """

    def __init__(self, name, vocab_size, embed_dim=None, shared_with=None, padding_idx=None, initializer=None):
        _check_name(name, "SparseFeature")
        if not _is_int(vocab_size):
            raise TypeError(f"SparseFeature '{name}': vocab_size must be an int, got {type(vocab_size).__name__}")
        if vocab_size < 1:
            raise ValueError(f"SparseFeature '{name}': vocab_size must be at least 1, got {vocab_size}")
        if embed_dim is None:
            embed_dim = _auto_embedding_dim(vocab_size)
        if not _is_int(embed_dim):
            raise TypeError(f"SparseFeature '{name}': embed_dim must be an int, got {type(embed_dim).__name__}")
        if embed_dim < 1:
            raise ValueError(f"SparseFeature '{name}': embed_dim must be positive, got {embed_dim}")
        if shared_with is not None and not isinstance(shared_with, str):
            raise TypeError(f"SparseFeature '{name}': shared_with must be a feature name (str) or None")
        if padding_idx is not None:
            raise ValueError(f"SparseFeature '{name}': padding_idx is not supported by rechub (no padding row); "
                             "leave it None")
        if initializer is not None:
            raise ValueError(f"SparseFeature '{name}': initializer is not supported; rechub initialises embeddings "
                             "from N(0, 0.0001^2), torch-rechub's default RandomNormal(0, 0.0001). Leave it None")
        self.name = name
        self.vocab_size = int(vocab_size)
        self.embed_dim = int(embed_dim)
        self.shared_with = shared_with
        self.padding_idx = None
        self.initializer = None

    def __repr__(self):
        return f"<SparseFeature {self.name} with Embedding shape ({self.vocab_size}, {self.embed_dim})>"


class DenseFeature:
    """A real-valued feature, appended after the embeddings.

    Args:
        name (str): the column's name in the data.
        embed_dim (int): must be 1 (torch-rechub's only value).
    """

    def __init__(self, name, embed_dim=1):
        _check_name(name, "DenseFeature")
        if embed_dim != 1:
            raise ValueError(f"DenseFeature '{name}': embed_dim must be 1, got {embed_dim!r}")
        self.name = name
        self.embed_dim = 1

    def __repr__(self):
        return f"<DenseFeature {self.name}>"


class SequenceFeature:
    """Not supported: rechub's multi-task models take SparseFeature and DenseFeature columns only.

    Building one raises ValueError; pool the sequence into sparse or dense columns before training.
    """

    def __init__(self, name, *args, **kwargs):
        raise ValueError(f"SequenceFeature '{name}': rechub's multi-task models take SparseFeature and "
                         "DenseFeature only; pool the sequence into id or dense columns first")
