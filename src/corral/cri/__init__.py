"""The Kubernetes Container Runtime Interface (cri-api `runtime.v1`) over the engine.

`server` serves `runtime.RuntimeService` (pod sandboxes, containers, exec) and
`images.ImageService` on a unix socket; `translate` maps CRI configs to the engine's
`ContainerConfig`; `records` keeps the CRI side's state. The gRPC stubs in `_gen` are
generated from api.proto by scripts/gen-cri. See docs/design/cri.md.
"""
