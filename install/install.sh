#!/bin/sh
# Installs image-agent on Linux or macOS: puts the binary in place, creates
# the config and state folders with safe modes, writes a starter config
# with 'image-agent init' when there is none, then registers the scheduled
# run with 'image-agent install' (systemd, cron or launchd).
#
# Usage: sudo sh install.sh [BINARY]
#   BINARY   the compiled image-agent for this machine (default: the
#            dist/image-agent-<target> next to this script, picked by
#            uname)
#
# Environment (all optional):
#   PREFIX             binary folder parent (default /usr/local)
#   CONFIG_DIR         config folder (default /etc/image-agent)
#   STATE_DIR          state folder (default /var/lib/image-agent)
#   SHOP_DB, IMAGES_DIR, BACKUP_DIR   passed to 'image-agent init' when
#                      there is no config yet (the first two are required
#                      then; BACKUP_DIR is the local or NAS backup folder)
#   IMAGE_AGENT_SKIP_SCHEDULE=1   do not run 'image-agent install'
set -eu

PREFIX=${PREFIX:-/usr/local}
CONFIG_DIR=${CONFIG_DIR:-/etc/image-agent}
STATE_DIR=${STATE_DIR:-/var/lib/image-agent}
BIN_DIR="$PREFIX/bin"
TARGET_BIN="$BIN_DIR/image-agent"
CONFIG_FILE="$CONFIG_DIR/config.json"

say() { printf '%s\n' "install.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)

pick_binary() {
  os=$(uname -s)
  arch=$(uname -m)
  case "$arch" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) die "no image-agent build for the CPU '$arch'" ;;
  esac
  case "$os" in
    Linux) target="$arch-unknown-linux-gnu" ;;
    Darwin) target="$arch-apple-darwin" ;;
    *) die "this script is for Linux and macOS, not '$os' (use install.ps1 on Windows)" ;;
  esac
  for dir in "$here" "$here/../dist" "$here/dist"; do
    if [ -f "$dir/image-agent-$target" ]; then
      printf '%s\n' "$dir/image-agent-$target"
      return 0
    fi
  done
  die "no image-agent-$target found next to this script; pass the binary: sh install.sh /path/to/image-agent"
}

SOURCE_BIN=${1:-}
[ -n "$SOURCE_BIN" ] || SOURCE_BIN=$(pick_binary)
[ -f "$SOURCE_BIN" ] || die "binary '$SOURCE_BIN' does not exist"

if [ "$(id -u)" != 0 ] && [ -z "${IMAGE_AGENT_ALLOW_USER:-}" ]; then
  die "this needs root (it writes $TARGET_BIN, $CONFIG_DIR and $STATE_DIR): run 'sudo sh $0 $*'"
fi

# Everything the steps below need is checked first, so a missing variable
# stops the script before anything is installed.
if [ ! -f "$CONFIG_FILE" ] && { [ -z "${SHOP_DB:-}" ] || [ -z "${IMAGES_DIR:-}" ]; }; then
  die "there is no $CONFIG_FILE yet: set SHOP_DB=/path/to/shop.db and IMAGES_DIR=/path/to/hd_images (and BACKUP_DIR for a local or NAS copy) so 'image-agent init' can write one; nothing was installed"
fi

# 1. The binary: copied to a temporary name, then renamed, so a running
#    copy is never overwritten in place.
umask 022
mkdir -p "$BIN_DIR"
cp "$SOURCE_BIN" "$TARGET_BIN.new"
chmod 0755 "$TARGET_BIN.new"
mv -f "$TARGET_BIN.new" "$TARGET_BIN"
say "installed $TARGET_BIN ($("$TARGET_BIN" --version))"

# 2. Folders: the config may hold the database password and Baidu keys,
#    the state folder holds the ledger and the Baidu tokens.
mkdir -p "$CONFIG_DIR" "$STATE_DIR"
chmod 0750 "$CONFIG_DIR"
chmod 0700 "$STATE_DIR"

# 3. A starter config when there is none; an existing one is kept.
if [ -f "$CONFIG_FILE" ]; then
  say "keeping the existing config $CONFIG_FILE"
else
  say "writing a starter config with 'image-agent init'"
  set -- init --database "$SHOP_DB" --images "$IMAGES_DIR" \
    --out "$CONFIG_FILE" --state "$STATE_DIR"
  if [ -n "${BACKUP_DIR:-}" ]; then set -- "$@" --backup-dir "$BACKUP_DIR"; fi
  "$TARGET_BIN" "$@"
  chmod 0640 "$CONFIG_FILE"
  say "check the order mapping in $CONFIG_FILE and run 'image-agent migrate --config $CONFIG_FILE' before the first night"
fi

# 4. The scheduled run.
if [ -n "${IMAGE_AGENT_SKIP_SCHEDULE:-}" ]; then
  say "not scheduling (IMAGE_AGENT_SKIP_SCHEDULE is set)"
else
  "$TARGET_BIN" install --config "$CONFIG_FILE"
fi
say "done"
