# Shared by bench/run.sh and bench/compare.sh (sourced, not run).

# wsedge_channels: the [limits] and the channels every benchmarked wsedge
# serves, after a [server] section the caller writes.
wsedge_channels() {
    cat <<'TOML'
# The peers have no admission control: lift wsedge's limits far above the
# load (they are still checked on every handshake and message, so their cost
# is measured) and keep everything else at its default.
[limits]
max_connections = 1000000
max_connections_per_ip = 1000000
handshake_rate = { per_second = 1000000000, burst = 1000000000 }
message_rate = { per_second = 1000000000, burst = 1000000000 }
# The capacity scenario holds its connections silent (full: a minute) and
# reads nothing meanwhile, so it answers no ping: keep the idle timeout above
# the hold, so that what is measured is the server holding them.
idle_timeout = "5m"

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"

[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
publish = "clients"

[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"
publish = "clients"
max_rooms = 100000
max_members = 100000
TOML
}

# wait_port PORT [PID]: returns once something listens on 127.0.0.1:PORT,
# 1 after ten seconds or as soon as PID (if given) has exited.
wait_port() {
    for _ in $(seq 100); do
        if (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
        if [[ -n ${2:-} ]] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
        sleep 0.1
    done
    return 1
}
