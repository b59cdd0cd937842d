"""Dockerfile parsing and building (issue 8): `corral.build.executor.run_build`.

Modules: `dockerfile` (parser), `expand` (variable expansion), `stages` (FROM,
meta ARGs, which stages run), `context` (.dockerignore, sources, content
digests), `config_ops` (metadata-only instructions), `state` (config, layers,
images, cache keys), `container` (a step's working container: RUN, layer
commit), `run_step` (RUN's argv and spec), `run_mounts` (RUN --mount),
`copy_sources` (what COPY/ADD copy), `copy_files` (COPY/ADD into a rootfs),
`executor` (the build).
"""

from __future__ import annotations

__all__: list[str] = []
