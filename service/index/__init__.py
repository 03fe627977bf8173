"""Vector indexes over chunk vectors, and their immutable on-disk generations.

Import backends from their modules (`service.index.faiss_index`, `service.index.exact`,
`service.index.generations`): this package itself stays light to import.
"""

from service.index.base import ChunkSelection, IdArray, VectorIndex

__all__ = ["ChunkSelection", "IdArray", "VectorIndex"]
