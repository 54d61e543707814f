#!/usr/bin/env bash
# A real aarch64 worker on an x86_64 machine: an arm64 Debian root (debootstrap) run through
# qemu-user-static and binfmt_misc, with aarch64 wheels of orchestrate's dependencies.
#
#   bash scripts/aarch64-worker.sh setup          # host packages, binfmt, root, wheels, venv (cached)
#   bash scripts/aarch64-worker.sh wheels         # only download the aarch64 wheels (no root needed)
#   bash scripts/aarch64-worker.sh check          # end to end: host submits, the emulated worker builds
#   bash scripts/aarch64-worker.sh worker [ARGS]  # `orchestrate worker --arch auto ARGS` in the root
#   bash scripts/aarch64-worker.sh exec CMD...    # any command in the root (repo at /repo)
#   bash scripts/aarch64-worker.sh plan           # print the root and wheel commands, run nothing
#   bash scripts/aarch64-worker.sh umount         # undo mounts a killed command left behind
#   bash scripts/aarch64-worker.sh clean          # delete the cache (never rm -rf it by hand while
#                                                 #   a command runs: /dev and /sys are bound in it)
#
# Everything is cached under $ORCHESTRATE_AARCH64_DIR (default: .data/aarch64 in the repo); each
# step leaves a stamp and is skipped on the next run. Needs root (apt-get, mount, chroot).
# `exec` and `worker` pass every ORCHESTRATE_* variable into the root; the root shares the host's
# network namespace, so a worker there reaches Redis and PostgreSQL on 127.0.0.1.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=${ORCHESTRATE_AARCH64_DIR:-$REPO/.data/aarch64}
ROOT=$DIR/root
WHEELS=$DIR/wheels
# Debian bookworm: python3 3.11 (3.11.2: scripts/aarch64/requirements.py decides markers for
# it) and glibc 2.36; the wheels must fit both, so the suite is not a setting.
SUITE=bookworm
PY_VERSION=3.11
GLIBC_MINOR=36
# The smallest torch that meets pyproject's floor (torch>=2.8) on aarch64: PyPI's 2.8.0 arm64
# wheel is a CPU build of 102 MB (its CUDA requirements are x86_64-only); from 2.11 PyPI's arm64
# wheels are CUDA builds (420-480 MB, and 2.13 adds >1.1 GB of direct nvidia-*/triton
# requirements). 2.8 is also what JetPack 6 ships. (README: *An aarch64 worker under emulation*)
TORCH_VERSION=${ORCHESTRATE_AARCH64_TORCH:-2.8.0}
VENV=/opt/orchestrate          # inside the root
PACKAGES="python3 python3-venv python3-pip ca-certificates"
HOST_PYTHON=${ORCHESTRATE_AARCH64_HOST_PYTHON:-$REPO/.venv/bin/python}
[ -x "$HOST_PYTHON" ] || HOST_PYTHON=python3

log() { printf '== [%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'aarch64-worker: %s\n' "$*" >&2; exit 1; }

# The Debian mirror apt uses on this host (deb822 `URIs:` or one-line `deb`), unless overridden.
debian_mirror() {
    if [ -n "${ORCHESTRATE_AARCH64_MIRROR:-}" ]; then echo "$ORCHESTRATE_AARCH64_MIRROR"; return; fi
    local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list)
    local uri
    uri=$(cat "${files[@]}" 2>/dev/null \
        | sed -nE -e 's/^URIs:[[:space:]]*//p' -e 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//p' \
        | tr ' ' '\n' | grep -E '^https?://.*/debian/?$' | head -n 1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

# Every platform tag pip must be told about: it does not infer manylinux_2_17 .. 2_36 from one.
platform_tags() {
    local n
    echo manylinux2014_aarch64
    for n in $(seq 17 "$GLIBC_MINOR"); do echo "manylinux_2_${n}_aarch64"; done
}

pip_download_args() {
    local tag
    printf '%s\n' download --only-binary=:all: --python-version "$PY_VERSION" \
        --implementation cp --abi "cp${PY_VERSION/./}" --abi abi3 --abi none --dest "$WHEELS"
    for tag in $(platform_tags); do printf '%s\n' --platform "$tag"; done
}

debootstrap_args() {
    printf '%s\n' --arch=arm64 --variant=minbase --foreign \
        "--include=${PACKAGES// /,}" "$SUITE" "$ROOT" "$(debian_mirror)"
}

cmd_plan() {
    echo "root: debootstrap $(debootstrap_args | tr '\n' ' ')"
    echo "root: chroot $ROOT /debootstrap/debootstrap --second-stage"
    echo "torch: $HOST_PYTHON -m pip $(pip_download_args | tr '\n' ' ')--no-deps torch==$TORCH_VERSION"
    echo "wheels: $HOST_PYTHON -m pip $(pip_download_args | tr '\n' ' ')-r $WHEELS/requirements.txt"
    echo "cpuinfo: $REPO/scripts/aarch64/cpuinfo -> $ROOT/proc/cpuinfo"
}

# Only what is missing, with one `apt-get update` before installing it.
step_host_packages() {
    local need=()
    command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
    command -v update-binfmts >/dev/null || need+=(binfmt-support)
    command -v debootstrap >/dev/null || need+=(debootstrap)
    [ ${#need[@]} -eq 0 ] && return
    log "apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

step_binfmt() {
    if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
        log "mounting binfmt_misc"
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
        update-binfmts --enable qemu-aarch64
    fi
    # F flag: the kernel holds the interpreter open, so it need not exist inside the root.
    grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
        || die "binfmt qemu-aarch64 lacks the F flag; copy /usr/bin/qemu-aarch64-static into $ROOT/usr/bin"
}

step_root() {
    [ -f "$DIR/.root-done" ] && return
    log "debootstrap $SUITE arm64 from $(debian_mirror) into $ROOT"
    rm -rf "$ROOT"
    mkdir -p "$ROOT"
    mapfile -t args < <(debootstrap_args)
    debootstrap "${args[@]}" >"$DIR/debootstrap.log" 2>&1 \
        || { tail -n 20 "$DIR/debootstrap.log" >&2; die "debootstrap (first stage) failed"; }
    log "debootstrap second stage (emulated)"
    chroot "$ROOT" /debootstrap/debootstrap --second-stage >>"$DIR/debootstrap.log" 2>&1 \
        || { tail -n 20 "$DIR/debootstrap.log" >&2; die "debootstrap (second stage) failed"; }
    touch "$DIR/.root-done"
}

# pip's own output goes to $DIR/wheels.log (this host's extra local indexes make it chatty).
pip_download() {
    # PIP_FIND_LINKS of this host points at x86_64 wheels only: leave it out.
    env -u PIP_FIND_LINKS "$HOST_PYTHON" -m pip "$@" >>"$DIR/wheels.log" 2>&1 \
        || { grep -v '^WARNING: Location' "$DIR/wheels.log" | tail -n 20 >&2; die "pip download failed"; }
}

step_wheels() {
    [ -f "$DIR/.wheels-done" ] && return
    mkdir -p "$WHEELS"
    mapfile -t args < <(pip_download_args)
    log "pip download torch==$TORCH_VERSION (aarch64, no deps)"
    pip_download "${args[@]}" --no-deps "torch==$TORCH_VERSION"
    # pip evaluates markers against the host: torch's own requirements, read from its wheel,
    # are evaluated for aarch64 here (its x86_64-only nvidia-* requirements drop out).
    "$HOST_PYTHON" "$REPO/scripts/aarch64/requirements.py" "$REPO/pyproject.toml" \
        "$WHEELS"/torch-"$TORCH_VERSION"-*.whl >"$WHEELS/requirements.txt"
    log "pip download $(wc -l <"$WHEELS/requirements.txt") requirements and their dependencies"
    pip_download "${args[@]}" -r "$WHEELS/requirements.txt"
    log "wheels: $(find "$WHEELS" -name '*.whl' | wc -l) files, $(du -sh "$WHEELS" | cut -f1)"
    touch "$DIR/.wheels-done"
}

# What this invocation mounted; unmounted again (deepest first) when it exits, so the root
# under .data never keeps the host's /dev and /sys bound inside it longer than a command runs.
MOUNTED=()
release_mounts() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount -R "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" 2>/dev/null || true
    done
    MOUNTED=()
}
trap release_mounts EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# mount_at TARGET MOUNT-ARGS...: mount unless something already is (another invocation's).
mount_at() {
    local target=$1
    shift
    mountpoint -q "$target" && return
    mount "$@" "$target"
    MOUNTED+=("$target")
}

mount_root() {
    mount_at "$ROOT/proc" -t proc proc
    # Debian's qemu 7.2 passes the host's x86 /proc/cpuinfo through; torch and onnxruntime
    # (pytorch/cpuinfo) segfault at import on it. Show them an arm64 one.
    if ! grep -q '^CPU architecture' "$ROOT/proc/cpuinfo"; then
        mount --bind "$REPO/scripts/aarch64/cpuinfo" "$ROOT/proc/cpuinfo"
        MOUNTED+=("$ROOT/proc/cpuinfo")
    fi
    mount_at "$ROOT/sys" --rbind /sys
    mount_at "$ROOT/dev" --rbind /dev
    mkdir -p "$ROOT/repo" "$ROOT/wheels"
    mount_at "$ROOT/wheels" --bind "$WHEELS"
    # The repo read-only: the emulated worker runs this checkout's code and cannot change it.
    if ! mountpoint -q "$ROOT/repo"; then
        mount_at "$ROOT/repo" --bind "$REPO"
        mount -o remount,bind,ro "$ROOT/repo"
    fi
    # A local artifact store or SQLite database must be the same path on both sides.
    if [ -n "${ORCHESTRATE_HOME:-}" ]; then
        mkdir -p "$ORCHESTRATE_HOME" "$ROOT$ORCHESTRATE_HOME"
        mount_at "$ROOT$ORCHESTRATE_HOME" --bind "$ORCHESTRATE_HOME"
    fi
}

# Mounts left by an invocation that was killed: everything under this root, deepest first.
cmd_umount() {
    local m
    for m in $(awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}

# Delete the cache: refused while a process runs in the root; --one-file-system never descends
# into a mount (the host's /dev and /sys are bound in the root while a command runs).
cmd_clean() {
    local link pid
    for link in /proc/[0-9]*/root; do
        if [ "$(readlink "$link" 2>/dev/null)" = "$ROOT" ]; then
            pid=${link#/proc/}
            die "process ${pid%/root} runs in $ROOT (a worker or exec?): stop it first"
        fi
    done
    cmd_umount
    rm -rf --one-file-system "$DIR"
}

# Run a command inside the root with a clean environment plus ORCHESTRATE_* from this one.
in_root() {
    local env=(HOME=/root LANG=C.UTF-8 PATH="$VENV/bin:/usr/sbin:/usr/bin:/sbin:/bin"
               PYTHONPATH=/repo PYTHONPYCACHEPREFIX=/var/cache/pycache)
    local var
    for var in $(compgen -e | grep '^ORCHESTRATE_' || true); do env+=("$var=${!var}"); done
    chroot "$ROOT" /usr/bin/env -i "${env[@]}" "$@"
}

step_venv() {
    [ -f "$DIR/.venv-done" ] && return
    mount_root
    log "installing the aarch64 wheels into $VENV (emulated pip)"
    in_root python3 -m venv "$VENV"
    # The host's pip decided markers for the host's Python, not this root's 3.11.2 (redis needs
    # async-timeout below 3.11.3): the root's own pip adds what it needs to the cache (emulated,
    # but it only downloads what is missing), then installs from the cache alone.
    # The CAs this host trusts (an egress proxy's among them, where there is one) for that pip.
    cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$ROOT/etc/ssl/host-ca-certificates.crt"
    in_root "$VENV/bin/pip" download -q --cert /etc/ssl/host-ca-certificates.crt \
        --find-links /wheels --dest /wheels \
        "torch==$TORCH_VERSION" -r /wheels/requirements.txt
    in_root "$VENV/bin/pip" install -q --no-index --find-links /wheels \
        "torch==$TORCH_VERSION" -r /wheels/requirements.txt
    in_root "$VENV/bin/python" -c "import torch, onnxruntime, celery, sqlalchemy" \
        || die "the root's venv cannot import its dependencies"
    # `orchestrate` in the root runs the bind-mounted checkout, as `pip install -e` would.
    printf '#!%s/bin/python\nimport sys\nfrom orchestrator.cli import main\nsys.exit(main())\n' \
        "$VENV" >"$ROOT$VENV/bin/orchestrate"
    chmod +x "$ROOT$VENV/bin/orchestrate"
    touch "$DIR/.venv-done"
}

cmd_setup() {
    [ "$(id -u)" -eq 0 ] || die "needs root (apt-get, mount, chroot)"
    mkdir -p "$DIR"
    step_host_packages
    step_binfmt
    step_root
    step_wheels
    step_venv
}

cmd_ready() {
    cmd_setup
    mount_root
    log "ready: $(in_root "$VENV/bin/python" -c 'import platform, torch, onnxruntime; print(platform.machine(), "python", platform.python_version(), "torch", torch.__version__, "onnxruntime", onnxruntime.__version__)')"
}

case "${1:-}" in
    plan) cmd_plan ;;
    setup) cmd_ready ;;
    wheels) mkdir -p "$DIR"; step_wheels ;;
    exec) shift; cmd_setup >&2; mount_root; in_root "$@" ;;
    worker) shift; cmd_setup >&2; mount_root; in_root "$VENV/bin/orchestrate" worker --arch auto "$@" ;;
    check) shift; cmd_ready; "$HOST_PYTHON" "$REPO/scripts/aarch64/e2e.py" --script "$0" "$@" ;;
    umount) cmd_umount ;;
    clean) cmd_clean ;;
    *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
