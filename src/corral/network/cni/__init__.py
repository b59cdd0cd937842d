"""A CNI client, as libcni is for Go runtimes (CNI SPEC.md sections 2-3, 5)."""

from corral.network.cni.client import CNIClient, CNIError
from corral.network.cni.config import NetworkConfigList, load_conflist, parse_conflist

__all__ = ["CNIClient", "CNIError", "NetworkConfigList", "load_conflist", "parse_conflist"]
