#!/usr/bin/env bash
# Unpack of a real Debian rootfs layer (debootstrap minbase bookworm, ~210 MB,
# ~93 MB gzipped): corral's apply_layer vs `umoci unpack` of the same layer vs
# the `gzip -dc | tar -x` floor, with hyperfine, in one run.
#
#   bench/layer_unpack.sh                  # as root; first run debootstraps (minutes)
#   RUNS=10 ROUNDS=3 bench/layer_unpack.sh
#
# The rootfs and layer are cached under $CACHE (/var/tmp/corral-bench-debian).
# Each round runs every tool (order rotated per round so drift favours no one);
# before every run the output dir is removed and `sync` flushes the previous
# run's dirty pages. Medians are over all rounds. Prints hyperfine's reports on
# stderr, the medians and ratios on stdout.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
CACHE=${CACHE:-/var/tmp/corral-bench-debian}
RUNS=${RUNS:-5}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
SUITE=${SUITE:-bookworm}

[[ $(id -u) == 0 ]] || { echo "layer_unpack.sh: run as root (debootstrap, umoci unpack, ownership)" >&2; exit 1; }
for tool in hyperfine umoci debootstrap gzip tar "$PY"; do
    command -v "$tool" >/dev/null || { echo "layer_unpack.sh: needs $tool (apt-get install hyperfine umoci debootstrap)" >&2; exit 1; }
done
COMPRESS=gzip
command -v pigz >/dev/null && COMPRESS=pigz

# The Debian mirror apt already uses (deb822 sources or sources.list), else deb.debian.org.
mirror() {
    local uri
    uri=$(grep -hE '^\s*URIs:.*/debian/?\s*$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}' || true)
    [[ -n $uri ]] || uri=$(grep -hE '^\s*deb\s+[^ ]+/debian/?\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -1 | awk '{print $2}' || true)
    [[ -n $uri ]] || uri=$(grep -hE '^\s*URIs:.*/debian/?\s*$' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}' || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

mkdir -p "$CACHE"
if [[ ! -e $CACHE/rootfs.done ]]; then
    MIRROR=$(mirror)
    echo "layer_unpack.sh: debootstrap --variant=minbase $SUITE from $MIRROR (once; cached in $CACHE)" >&2
    rm -rf "$CACHE/rootfs" "$CACHE/rootfs.tmp"
    debootstrap --variant=minbase "$SUITE" "$CACHE/rootfs.tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    mv "$CACHE/rootfs.tmp" "$CACHE/rootfs"
    touch "$CACHE/rootfs.done"
    rm -f "$CACHE/layer.tar" "$CACHE/layer.tar.gz"
fi
if [[ ! -e $CACHE/layer.tar.gz ]]; then
    tar --numeric-owner --xattrs --sort=name -C "$CACHE/rootfs" -cf "$CACHE/layer.tar.tmp" .
    $COMPRESS -6 -c "$CACHE/layer.tar.tmp" >"$CACHE/layer.tar.gz.tmp"
    mv "$CACHE/layer.tar.tmp" "$CACHE/layer.tar"
    mv "$CACHE/layer.tar.gz.tmp" "$CACHE/layer.tar.gz"
fi
LAYER=$CACHE/layer.tar.gz

# An OCI image layout holding exactly that blob, for umoci.
OCI=$CACHE/oci
if [[ ! -e $OCI/index.json || $OCI/index.json -ot $LAYER ]]; then
    rm -rf "$OCI"
    "$PY" - "$LAYER" "$CACHE/layer.tar" "$OCI" <<'EOF'
import hashlib, json, os, shutil, sys
gz, tar, oci = sys.argv[1:]
def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
blobs = os.path.join(oci, "blobs", "sha256")
os.makedirs(blobs)
def put(data: bytes) -> tuple[str, int]:
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)
layer = sha(gz)
os.link(gz, os.path.join(blobs, layer)) if os.stat(gz).st_dev == os.stat(oci).st_dev else shutil.copy(gz, os.path.join(blobs, layer))
config = {"architecture": "amd64", "os": "linux", "config": {},
          "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha(tar)]}}
cdig, csize = put(json.dumps(config).encode())
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": csize},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": "sha256:" + layer, "size": os.stat(gz).st_size}]}
mdig, msize = put(json.dumps(manifest).encode())
index = {"schemaVersion": 2, "manifests": [{"mediaType": manifest["mediaType"], "digest": mdig, "size": msize,
                                            "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}
with open(os.path.join(oci, "index.json"), "w") as f:
    json.dump(index, f)
with open(os.path.join(oci, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
EOF
fi

WORK=$(mktemp -d /var/tmp/corral-bench-unpack.XXXXXX)
cleanup() { [[ -n ${BENCH_DEBUG:-} ]] || rm -rf "$WORK"; }
trap cleanup EXIT
echo "layer: $LAYER ($(du -h "$LAYER" | cut -f1) gzipped, $(du -h "$CACHE/layer.tar" | cut -f1) tar, $(tar -tzf "$LAYER" | wc -l) entries)" >&2

declare -A CMD PREP
CMD[corral]="$PY -c \"from corral.image.layer_tar import apply_layer; apply_layer(open('$LAYER', 'rb'), '$WORK/corral', whiteouts='overlay')\""
PREP[corral]="rm -rf $WORK/corral && mkdir $WORK/corral && sync"
CMD[umoci]="umoci unpack --image $OCI:bench $WORK/umoci"
PREP[umoci]="rm -rf $WORK/umoci && sync"
CMD[floor]="gzip -dc $LAYER | tar -x -C $WORK/floor"
PREP[floor]="rm -rf $WORK/floor && mkdir $WORK/floor && sync"
ORDER=(corral umoci floor)

for ((round = 0; round < ROUNDS; round++)); do
    args=()
    for ((i = 0; i < ${#ORDER[@]}; i++)); do
        name=${ORDER[$(((i + round) % ${#ORDER[@]}))]}
        args+=(--prepare "${PREP[$name]}" -n "$name" "${CMD[$name]}")
    done
    hyperfine --style basic --warmup "$WARMUP" -r "$RUNS" \
        --export-json "$WORK/round-$round.json" "${args[@]}" >&2
done

"$PY" - "$WORK"/round-*.json <<'EOF'
import json, statistics, sys
times: dict[str, list[float]] = {}
for path in sys.argv[1:]:
    with open(path) as f:
        for result in json.load(f)["results"]:
            times.setdefault(result["command"], []).extend(result["times"])
med = {name: statistics.median(t) for name, t in times.items()}
for name in ("corral", "umoci", "floor"):
    print(f"{name:7s} median {med[name]:6.3f} s  ({len(times[name])} runs, min {min(times[name]):.3f} s)")
print(f"corral/umoci {med['corral'] / med['umoci']:.2f}x   corral/floor {med['corral'] / med['floor']:.2f}x"
      f"   (goal: < 1 and <= 1.5)")
EOF
