"""conmon's exit command, first stage (run as `python -I -S exit_hook.py STATE -- CMD...`).

When the container exits, conmon runs its exit command. A foreground `corral run` (the
pid in the state's `rm_client`) waits for that exit and cleans up itself, so a second
Python process importing the whole engine only to find the work done would cost CPU at
the worst moment. This stage imports only `os` and `json` and exits at once when there
is nothing for the real cleanup command (`corral container cleanup ID`) to do: that CLI
is alive, or has finished already (the state says exited with no pid and no network
left, or the container is gone: `run --rm`); else it execs that command.
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
            state = json.load(f)
        client = state.get("rm_client")
        if isinstance(client, int) and client > 0 and client != os.getpid() and \
                _alive(client):
            return 0
        if state.get("pid") is None and state.get("status") in ("exited", "stopped") and \
                not state.get("networks"):
            return 0  # cleaned up already
    except FileNotFoundError:
        return 0  # removed already
    except (OSError, ValueError, AttributeError):
        pass
    os.execv(command[0], command)
    return 127  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
