"""conmon's exit command, first stage (run as `python -I -S exit_hook.py STATE -- CMD...`).

When the container exits, conmon runs its exit command. A foreground `corral run` (the
pid in the state's `rm_client`) waits for that exit and cleans up itself, so a second
Python process importing the whole engine only to find the work done would cost CPU at
the worst moment. This stage imports only `os` and `json`: if that CLI is alive it
exits at once, else it execs the real cleanup command (`corral container cleanup ID`).
"""

import json
import os
import sys


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: exit_hook.py STATE_JSON -- COMMAND...", file=sys.stderr)
        return 2
    state_path, command = argv[0], argv[2:]
    try:
        with open(state_path) as f:
            client = json.load(f).get("rm_client")
        if isinstance(client, int) and client > 0 and client != os.getpid() and \
                _alive(client):
            return 0
    except (OSError, ValueError, AttributeError):
        pass
    os.execv(command[0], command)
    return 127  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
