# Shared by scripts/test and scripts/demo: make the project runnable on a fresh Debian-like machine.
# Sourced, not executed. Creates .venv (Python >= 3.11), installs the project, and finds mosquitto.

P1LORA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
P1LORA_VENV="${P1LORA_VENV:-$P1LORA_ROOT/.venv}"

log() { printf '[p1-lora] %s\n' "$*" >&2; }

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# ensure_venv EXTRAS: create the venv when missing and (re)install the project when
# pyproject.toml changed since the last install. EXTRAS may be empty (runtime dependencies only).
ensure_venv() {
    local extras="$1" python stamp spec
    if [ -x "$P1LORA_VENV/bin/python" ] && ! "$P1LORA_VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        # A venv left half-made by an earlier run (e.g. python3-venv was missing): start over.
        log "removing the incomplete virtual environment $P1LORA_VENV"
        rm -rf "$P1LORA_VENV"
    fi
    if [ ! -x "$P1LORA_VENV/bin/python" ]; then
        if ! python="$(find_python)"; then
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
                log "installing python3 and python3-venv with apt-get"
                apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
                python="$(find_python)" || { log "Python >= 3.11 is required"; return 1; }
            else
                log "Python >= 3.11 with the venv module is required (Debian: apt install python3-venv)"
                return 1
            fi
        fi
        log "creating virtual environment $P1LORA_VENV with $python"
        "$python" -m venv "$P1LORA_VENV" || {
            log "could not create a venv; on Debian install python3-venv"
            return 1
        }
    fi
    stamp="$P1LORA_VENV/.p1lora-installed-${extras:-base}"
    spec="$P1LORA_ROOT${extras:+[$extras]}"
    if [ ! -f "$stamp" ] || [ "$P1LORA_ROOT/pyproject.toml" -nt "$stamp" ]; then
        log "installing p1-lora${extras:+[$extras]} into $P1LORA_VENV"
        local pip_log="$P1LORA_VENV/pip-install.log"
        # pip's and setuptools' chatter goes to a log; it is shown only when the install fails.
        if ! { "$P1LORA_VENV/bin/python" -m pip install --upgrade pip ||
            true; "$P1LORA_VENV/bin/python" -m pip install -e "$spec"; } >"$pip_log" 2>&1; then
            tail -n 40 "$pip_log" >&2
            log "installing p1-lora failed (full log: $pip_log)"
            return 1
        fi
        touch "$stamp"
    fi
}

# Prints the mosquitto binary's path as `p1-lora demo` finds it (tools/demo/broker.py):
# $P1LORA_MOSQUITTO when set (a path that is not there means none), else PATH, /usr/sbin.
find_mosquitto() {
    local path
    if [ -n "${P1LORA_MOSQUITTO:-}" ]; then
        [ -x "$P1LORA_MOSQUITTO" ] && [ -f "$P1LORA_MOSQUITTO" ] && printf '%s\n' "$P1LORA_MOSQUITTO"
        return
    fi
    for path in "$(command -v mosquitto 2>/dev/null)" /usr/sbin/mosquitto; do
        if [ -n "$path" ] && [ -f "$path" ] && [ -x "$path" ]; then
            printf '%s\n' "$path"
            return 0
        fi
    done
    return 1
}

# Prints the mosquitto binary's path, installing the Debian package when missing and root.
ensure_mosquitto() {
    local path
    for path in "${P1LORA_MOSQUITTO:-}" "$(command -v mosquitto 2>/dev/null)" /usr/sbin/mosquitto; do
        if [ -n "$path" ] && [ -x "$path" ]; then
            printf '%s\n' "$path"
            return 0
        fi
    done
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing the mosquitto Debian package"
        # Do not start the system service: tests and the demo start their own broker.
        local policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            policy=/usr/sbin/policy-rc.d
            printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
        fi
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto) >&2 || true
        [ -z "$policy" ] || rm -f "$policy"
        [ -x /usr/sbin/mosquitto ] && { printf '%s\n' /usr/sbin/mosquitto; return 0; }
    fi
    return 1
}
