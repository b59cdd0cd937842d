"""`features`: what this build of corral-runtime implements (features.md, features-linux.md)."""

from __future__ import annotations

from corral.linux import capabilities
from corral.linux.mounts import FLAGS, PROPAGATION
from corral.oci.runtime_config import OCI_VERSION
from corral.runtime.hooks import KINDS


def features() -> dict:
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(KINDS),
        "mountOptions": sorted(set(FLAGS) | set(PROPAGATION) | {"rro"}),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": list(capabilities.NAMES),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": True},
            "seccomp": _seccomp(),
            # implemented (corral.linux.lsm); whether the host has the LSM is irrelevant
            # here (features-linux.md): create refuses the fields where it does not
            "apparmor": {"enabled": True},
            "selinux": {"enabled": True},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {"org.opencontainers.runtime-spec.features.corral": "true"},
    }


def _seccomp() -> dict:
    from corral.linux import seccomp  # ctypes and libseccomp only for this verb

    return seccomp.features()
