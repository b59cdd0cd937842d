"""Container networking through CNI (docs/design/networking.md).

- `cni/`: a CNI client (SPEC.md sections 2-3, 5): configuration lists, plugin
  invocation, ADD/DEL/CHECK/STATUS/GC, version negotiation, the result cache.
- `netns`: persistent network namespaces bind-mounted on files.
- `networks`: Corral's named networks (records → CNI configuration lists).
- `ports`: `-p`/`-P` parsing and host-port reservation checks.
- `hosts`: /etc/hosts and /etc/resolv.conf for containers on a network.
- `manager`: what the engine calls: attach a container's netns to its networks, detach.
"""
