"""grpc and the generated CRI stubs stay out of every other command's start-up: only
`corral cri serve` imports them (when it serves)."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import json, sys
from corral.cli import main
for argv in (["ps"], ["run", "busybox"], ["cri", "serve"], ["--help"]):
    main.build_parser(argv)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("grpc", "google")
                        or m.startswith("corral.cri"))))
"""


def test_cli_parsers_do_not_import_grpc():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                            check=True)
    assert json.loads(result.stdout) == []
