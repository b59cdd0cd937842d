"""Content-addressed blobs: ingest -> verify -> commit (containerd's content store)."""

from corral.content.store import BlobNotFound, ContentStore, DigestMismatch

__all__ = ["BlobNotFound", "ContentStore", "DigestMismatch"]
