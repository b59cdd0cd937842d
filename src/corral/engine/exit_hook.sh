# conmon's exit command, first stage: /bin/sh exit_hook.sh STATE_JSON -- COMMAND...
#
# When the container exits, conmon runs its exit command. A foreground `corral run`
# (the pid in the state's "rm_client") waits for that exit and cleans up itself, so the
# real cleanup command (`corral container cleanup ID`, a Python process importing the
# engine) would only find the work done, and cost CPU when the next command starts. This
# stage, in sh (~1 ms, where a Python start-up is ~8), exits at once when there is
# nothing to do: that CLI is alive, or has finished already (the state says exited or
# stopped, with no pid and no network left), or the container is gone (run --rm); else
# it execs the command.
#
# STATE_JSON is the engine's state.json as corral.storage.records.write_json writes it:
# one line, compact, keys sorted. Strings in it escape their quotes, so a pattern such
# as '"pid":' only matches the key.
state=$1
if [ "$2" != "--" ] || [ $# -lt 3 ]; then
    echo "usage: exit_hook.sh STATE_JSON -- COMMAND..." >&2
    exit 2
fi
shift 2
[ -e "$state" ] || exit 0  # removed already
s=
if read -r s < "$state" || [ -n "$s" ]; then
    case $s in
    *'"rm_client":'[1-9]*)
        client=${s#*'"rm_client":'}
        client=${client%%[!0-9]*}
        # alive: /proc/PID/stat readable and not a zombie (the state after the last ") ")
        if [ "$client" != "$$" ] && read -r stat < "/proc/$client/stat" 2>/dev/null; then
            case ${stat##*') '} in
            Z*|X*) ;;
            *) exit 0 ;;
            esac
        fi
        ;;
    esac
    case $s in
    *'"pid":'[0-9]*|*'"networks":['[!]]*) ;;  # still recorded as running, or networks left
    *'"status":"exited"'*|*'"status":"stopped"'*) exit 0 ;;  # cleaned up already
    esac
fi
exec "$@"
