from typing import Optional

class SparseFeature:
    name: str
    vocab_size: int
    embed_dim: int
    shared_with: Optional[str]
    padding_idx: None
    initializer: None
    def __init__(self, name: str, vocab_size: int, embed_dim: Optional[int] = ..., shared_with: Optional[str] = ...,
                 padding_idx: None = ..., initializer: None = ...) -> None: ...

class DenseFeature:
    name: str
    embed_dim: int
    def __init__(self, name: str, embed_dim: int = ...) -> None: ...

class SequenceFeature:
    def __init__(self, name: str, *args: object, **kwargs: object) -> None: ...
