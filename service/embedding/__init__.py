"""Text -> L2-normalised float32 vectors, behind the `Embedder` protocol."""

from service.embedding.base import Embedder, Role
from service.embedding.factory import Backend, load_embedder
from service.embedding.fake import FakeEmbedder
from service.embedding.sentence_transformers import SentenceTransformerEmbedder

__all__ = [
    "Backend",
    "Embedder",
    "FakeEmbedder",
    "Role",
    "SentenceTransformerEmbedder",
    "load_embedder",
]
