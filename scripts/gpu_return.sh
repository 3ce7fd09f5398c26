#!/usr/bin/env bash
# Bring a large file back from a device machine, whose calls return at most 8 files of 16 MiB
# each (64 MiB in all): split it into 15 MiB parts and copy parts FIRST .. FIRST+COUNT-1, with
# its sha256, into DEST (e.g. $OUT). A file over ~100 MiB needs two calls, the machine kept warm.
#   scripts/gpu_return.sh FILE DEST [FIRST [COUNT]]      (default: parts 0..5)
# Here, afterwards:  cat NAME.part-* > NAME && sha256sum -c NAME.sha256
set -euo pipefail
file="$1"; dest="$2"; first="${3:-0}"; count="${4:-6}"
[[ -f "$file" ]] || { echo "gpu_return.sh: no file $file" >&2; exit 2; }
name="$(basename "$file")"
work="${TMPDIR:-/tmp}/gpu_return.$name"
rm -rf "$work"; mkdir -p "$work" "$dest"
split -b 15M -d -a 2 "$file" "$work/$name.part-"
(cd "$(dirname "$file")" && sha256sum "$name") > "$dest/$name.sha256"
parts=("$work"/*)
echo "gpu_return.sh: $name is ${#parts[@]} parts; copying $first..$(( first + count - 1 ))"
for (( i = first; i < first + count && i < ${#parts[@]}; i++ )); do cp "${parts[$i]}" "$dest/"; done
