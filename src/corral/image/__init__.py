"""Images: layer tar apply/diff, transports, image config → runtime spec.

Modules: `layer_tar` (apply and diff of OCI layer changesets, image-spec
layer.md), `compression` (gzip/zstd/plain sniffing).
"""
