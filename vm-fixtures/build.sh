#!/usr/bin/env bash
# Builds ferric's VM fixtures from Debian packages only (apt-get download + dpkg-deb -x; nothing is
# mounted, nothing needs a loop device): the deploy kernel and ramdisk, and the test instance
# images. Outputs go to <target>/vm-fixtures/<key>/, where <key> hashes every input (these scripts,
# the exact package versions, the agent binary), so a second run with the same inputs only prints
# the paths. Prints KEY=PATH lines (also saved as manifest.env next to the outputs) on stdout; on
# stderr, one line before each slow step that runs once (building the agent, downloading and
# unpacking the packages, building the images), and cargo's own progress while it builds the agent.
#
#   vm-fixtures/build.sh [--agent PATH | --build-agent] [--target-dir DIR]
#
# --agent PATH      put this statically linked ferric-agent into the deploy ramdisk
# --build-agent     build it first: cargo build --release -p ferric-agent, crt-static
# --target-dir DIR  cargo target directory (default: $CARGO_TARGET_DIR or <workspace>/target)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
agent=""
build_agent=0
target_dir=${CARGO_TARGET_DIR:-$root/target}

die() { echo "vm-fixtures: $*" >&2; exit 1; }
log() { echo "vm-fixtures: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --agent) [ $# -ge 2 ] || die "--agent needs a path"; agent=$2; shift 2 ;;
    --agent=*) agent=${1#*=}; shift ;;
    --build-agent) build_agent=1; shift ;;
    --target-dir) [ $# -ge 2 ] || die "--target-dir needs a path"; target_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done

for tool in apt-get apt-cache dpkg-deb depmod modprobe modinfo cpio zstd mformat mcopy sfdisk mke2fs \
            qemu-img sha256sum flock xz od debugfs; do
  command -v "$tool" >/dev/null || die "missing host tool: $tool (run .ci/install-deps)"
done

if [ "$build_agent" = 1 ]; then
  # An explicit --target keeps RUSTFLAGS off build scripts and proc-macros (they stay dynamic and
  # share the host cache); only the agent and its dependencies are built static. Without the
  # release profile's whole-program optimisation: the agent spends its time in I/O, and fat LTO
  # with one codegen unit makes this build minutes longer on 2 cores (relinking the `ferric`
  # binary alone takes about 7).
  triple=x86_64-unknown-linux-gnu
  agent="$target_dir/$triple/release/ferric-agent"
  # Cargo's `Compiling` lines (not -q) show that a first build, minutes long, is moving.
  if [ -f "$agent" ]; then
    log "checking the deploy ramdisk's static ferric-agent (cargo rebuilds it only if its sources changed)"
  else
    log "building the deploy ramdisk's static ferric-agent (once; cached in $target_dir/$triple/release," \
        "several minutes on 2 cores)"
  fi
  (cd "$root" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
     CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
     cargo build --release -p ferric-agent --bin ferric-agent --target "$triple" --target-dir "$target_dir" >&2)
fi

if [ -n "$agent" ]; then
  [ -f "$agent" ] || die "agent binary not found: $agent"
  agent=$(cd "$(dirname "$agent")" && pwd)/$(basename "$agent")
  # The ramdisk has no libc: an ELF agent must have no program interpreter. (Never ldd: it may
  # run the file.) A shell script is accepted too (run by the ramdisk's busybox; tests use one).
  if [ "$(od -An -tx1 -N4 "$agent" | tr -d ' ')" = 7f454c46 ]; then
    command -v readelf >/dev/null || die "missing host tool: readelf (binutils)"
    if readelf -lW "$agent" | grep -q 'program interpreter'; then
      die "$agent is dynamically linked; build it with RUSTFLAGS='-C target-feature=+crt-static' (or --build-agent)"
    fi
  elif [ "$(head -c2 "$agent")" != '#!' ]; then
    die "$agent is neither an ELF binary nor a script"
  fi
fi

base="$target_dir/vm-fixtures"
mkdir -p "$base/debs"
# One build at a time per target dir (parallel tests all ask for the fixtures).
exec 9>"$base/.lock"
if ! flock -n 9; then
  log "waiting for another build of the fixtures in $base to finish"
  flock 9
fi

# --- inputs ---------------------------------------------------------------------------------
# The meta-package names the current kernel ABI package; pin exact versions of everything.
# Resolving costs seconds (apt-cache parses every list), so it is cached until the lists change.
resolve_pins() {
  local kpkg p v
  kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null \
         | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$kpkg" ] || die "cannot resolve linux-image-amd64 (apt-get update?)"
  apt-cache policy "$kpkg" busybox-static syslinux | awk '
    /^[^ ].*:$/ { p = substr($1, 1, length($1) - 1) }
    /Candidate:/ { if ($2 != "(none)") print p "=" $2 }'
}
lists_stamp=$( (ls -l --time-style=+%s /var/lib/apt/lists/ 2>/dev/null; apt-config dump 2>/dev/null \
               | grep -i '^APT::Default-Release' || true) | sha256sum | cut -c1-16)
pins_cache="$base/pins.$lists_stamp"
if [ ! -s "$pins_cache" ]; then
  resolve_pins > "$pins_cache.tmp"
  [ "$(wc -l < "$pins_cache.tmp")" = 3 ] || die "cannot resolve package versions: $(cat "$pins_cache.tmp")"
  find "$base" -maxdepth 1 -name "pins.*" ! -name "pins.$lists_stamp*" -delete
  mv "$pins_cache.tmp" "$pins_cache"
fi
mapfile -t pins < "$pins_cache"

key=$( {
  echo "format 1"
  printf '%s\n' "${pins[@]}"
  (cd "$here" && find . -type f ! -name '*.md' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
  if [ -n "$agent" ]; then sha256sum < "$agent"; else echo "no agent"; fi
} | sha256sum | cut -c1-16)
out="$base/$key"

print_manifest() { cat "$out/manifest.env"; }
if [ -f "$out/manifest.env" ]; then
  print_manifest
  exit 0
fi

rm -rf "$out.tmp"
mkdir -p "$out.tmp"
trap 'rm -rf "$out.tmp"' EXIT
work="$out.tmp/work"
mkdir -p "$work"
export SOURCE_DATE_EPOCH=1700000000 E2FSPROGS_FAKE_TIME=1700000000 LC_ALL=C TZ=UTC

# --- packages -------------------------------------------------------------------------------
# Extracted once per set of pinned versions (the kernel alone unpacks to ~400 MB), then shared.
pkg="$base/pkg-$(printf '%s\n' "${pins[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$pkg/.done" ]; then
  debs=()
  for pin in "${pins[@]}"; do
    p=${pin%%=*}
    v=${pin#*=}
    deb=$(ls "$base/debs/${p}_"*.deb 2>/dev/null | grep -F "_${v//:/%3a}_" | head -n1 || true)
    if [ -z "$deb" ]; then
      log "downloading $pin from the Debian archive (once; cached in $base/debs)"
      (cd "$base/debs" && apt-get download -qq -o APT::Sandbox::User=root "$pin" >&2) \
        || die "apt-get download $pin failed"
      deb=$(ls "$base/debs/${p}_"*.deb | grep -F "_${v//:/%3a}_" | head -n1)
    fi
    debs+=("$deb")
  done
  log "unpacking ${pins[*]%%=*} (once for these versions; cached in $pkg)"
  rm -rf "$pkg"
  for deb in "${debs[@]}"; do
    dpkg-deb -x "$deb" "$pkg"
  done
  kver=$(ls "$pkg/lib/modules")
  [ "$(echo "$kver" | wc -l)" = 1 ] || die "expected one kernel release, got: $kver"
  depmod -b "$pkg" "$kver"
  # Older extractions and downloads are of no further use.
  find "$base" -maxdepth 1 -name 'pkg-*' ! -path "$pkg" -exec rm -rf {} +
  touch "$pkg/.done"
fi
kver=$(ls "$pkg/lib/modules")
bb="$pkg/bin/busybox"
[ -x "$bb" ] || die "busybox-static has no /bin/busybox"

# Modules (and their dependencies, soft pre-dependencies included) in load order: the ramdisk has
# no modules.dep. /etc/ferric/modules holds "GROUP MODULE" lines, a group per module asked for
# (its dependencies first); /etc/ferric/modaliases holds "GROUP=PATTERN" for the PCI devices a
# group drives. At boot a group loads only if one of its PCI devices is present (groups without
# PCI aliases always load), and a group written "?NAME" only if no virtio disk showed up: loading
# drivers for absent hardware (e1000e, the ATA stack) costs seconds under TCG.
add_modules() { # DESTROOT [?]MODULE...
  local dest=$1; shift
  mkdir -p "$dest/lib/modules" "$dest/etc/ferric"
  touch "$dest/etc/ferric/modules" "$dest/etc/ferric/modaliases"
  local g m line f name
  for g in "$@"; do
    m=${g#\?}
    modprobe -d "$pkg" -S "$kver" --show-depends "$m" > "$work/deps" || die "no module $m"
    : > "$work/seen"
    while read -r line; do
      f=$(echo "$line" | awk '$1=="insmod"{print $2}')
      [ -n "$f" ] || continue
      name=$(basename "$f" .ko)
      grep -qxF "$name" "$work/seen" && continue
      echo "$name" >> "$work/seen"
      cp "$f" "$dest/lib/modules/$name.ko"
      echo "$g $name" >> "$dest/etc/ferric/modules"
    done < "$work/deps"
    # "GROUP=PATTERN" words; an all-wildcard tail shortened to "*" (the init reads them slowly).
    modinfo -F alias "$f" | grep '^pci:' | sed -e 's/sv\*sd\*bc\*sc\*i\*$/*/' -e "s/^/$g=/" \
      >> "$dest/etc/ferric/modaliases" || true
  done
}

add_busybox() { # DESTROOT
  local dest=$1 a
  mkdir -p "$dest/bin" "$dest/sbin" "$dest/usr/bin" "$dest/usr/sbin"
  cp "$bb" "$dest/bin/busybox"
  for a in $("$bb" --list-full); do
    [ -e "$dest/$a" ] || ln -s /bin/busybox "$dest/$a"
  done
}

add_acpi() { # DESTROOT
  mkdir -p "$1/etc/acpi/PWRF"
  install -m 0755 "$here/common/acpi-power" "$1/etc/acpi/PWRF/00000080"
}

mkcpio() { # DIR OUT: newc, root-owned, fixed timestamps, zstd
  find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) \
    | zstd -q -19 -T1 > "$2"
}

log "building the deploy ramdisk and the instance images $key${agent:+ (agent $agent)}" \
    "(once for these inputs; cached in $out, about half a minute)"

# --- deploy ramdisk -------------------------------------------------------------------------
d="$work/deploy"
add_busybox "$d"
add_modules "$d" virtio_pci virtio_rng virtio_net virtio_blk e1000 e1000e ?ata_piix ?sd_mod button evdev
add_acpi "$d"
install -m 0755 "$here/deploy/init" "$d/init"
install -m 0644 "$here/common/lib.sh" "$d/etc/ferric/lib.sh"
install -m 0755 "$here/common/udhcpc.script" "$d/etc/ferric/udhcpc.script"
mkdir -p "$d/proc" "$d/sys" "$d/dev" "$d/run" "$d/tmp" "$d/root"
if [ -n "$agent" ]; then
  install -m 0755 "$agent" "$d/usr/bin/ferric-agent"
  # Debug info is a third of a release binary and of no use in the ramdisk.
  if command -v strip >/dev/null && [ "$(od -An -tx1 -N4 "$agent" | tr -d ' ')" = 7f454c46 ]; then
    strip --strip-debug "$d/usr/bin/ferric-agent"
  fi
fi
cp "$pkg/boot/vmlinuz-$kver" "$out.tmp/deploy.kernel"
mkcpio "$d" "$out.tmp/deploy.initramfs"

# The bzImage's payload as a plain ELF vmlinux: QEMU boots it directly through its PVH entry
# (-kernel), skipping the in-guest xz decompression that costs several seconds under TCG. PXE and
# disk boots use the bzImage. Payload location from the boot protocol header (setup_sects at
# 0x1f1, payload_offset/payload_length at 0x248/0x24c, relative to the protected-mode code).
extract_vmlinux() { # BZIMAGE OUT
  local setup off len start size
  setup=$(od -An -tu1 -j $((0x1f1)) -N1 "$1" | tr -d ' ')
  [ "$setup" != 0 ] || setup=4
  off=$(od -An -tu4 -j $((0x248)) -N4 "$1" | tr -d ' ')
  len=$(od -An -tu4 -j $((0x24c)) -N4 "$1" | tr -d ' ')
  start=$(( (setup + 1) * 512 + off ))
  # The payload ends with the decompressed size (u32 LE); xz reports the kernel's stream as
  # truncated even though it decodes completely, so the size is what gets checked.
  size=$(od -An -tu4 -j $(( start + len - 4 )) -N4 "$1" | tr -d ' ')
  dd if="$1" bs=1M iflag=skip_bytes,count_bytes skip="$start" count=$(( len - 4 )) status=none \
    | { xz -dcq 2>/dev/null || true; } > "$2"
  [ "$(stat -c %s "$2")" = "$size" ] || die "cannot decompress the kernel payload (not xz?)"
  [ "$(head -c4 "$2" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || die "kernel payload is not ELF"
}
extract_vmlinux "$out.tmp/deploy.kernel" "$out.tmp/vmlinux"

# --- instance: root filesystem (the partition image) --------------------------------------
root_uuid=4665722d-6963-4000-8000-000000000001
r="$work/rootfs"
add_busybox "$r"
add_acpi "$r"
install -m 0755 "$here/instance/rootfs-init" "$r/sbin/init.ferric"
install -D -m 0644 "$here/common/lib.sh" "$r/etc/ferric/lib.sh"
ln -sf init.ferric "$r/sbin/init"
mkdir -p "$r/proc" "$r/sys" "$r/dev" "$r/run" "$r/tmp" "$r/root"
echo "$root_uuid" > "$r/etc/ferric-root-uuid"
find "$r" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
truncate -s 8M "$out.tmp/partition.img"
mke2fs -q -F -t ext4 -O ^has_journal -L ferric-root -U "$root_uuid" \
  -E "root_owner=0:0,hash_seed=$root_uuid" -d "$r" "$out.tmp/partition.img"
# mke2fs -d copies each source file's ctime, which no one can set: pin it for a reproducible image.
(cd "$r" && find . | sed -e 's|^\.||' -e 's|^$|/|'; echo /lost+found) \
  | awk -v t="$SOURCE_DATE_EPOCH" '{ print "set_inode_field " $0 " ctime @" t }' > "$work/ctime.cmds"
debugfs -w -f "$work/ctime.cmds" "$out.tmp/partition.img" >/dev/null 2>&1 \
  || die "debugfs could not pin inode times"

# --- instance: initramfs (netboot of the partition image, and the whole-disk image's) -------
i="$work/instance"
add_busybox "$i"
add_modules "$i" virtio_pci virtio_blk ?ata_piix ?sd_mod ext4 button evdev
add_acpi "$i"
install -m 0755 "$here/instance/init" "$i/init"
install -m 0644 "$here/common/lib.sh" "$i/etc/ferric/lib.sh"
mkdir -p "$i/proc" "$i/sys" "$i/dev" "$i/run" "$i/tmp"
ln "$out.tmp/deploy.kernel" "$out.tmp/instance.kernel"
mkcpio "$i" "$out.tmp/instance.initramfs"

# --- instance: whole-disk image -------------------------------------------------------------
# MBR (syslinux mbr.bin) | p1 FAT16 16 MiB, bootable: SYSLINUX + kernel + initramfs | p2 ext4 root.
# SYSLINUX is installed with its mtools-based installer straight into the partition image.
boot="$work/boot.img"
truncate -s 16M "$boot"
mformat -i "$boot" -T 32768 -h 64 -s 32 -H 2048 -v FERRICBOOT -N 46455252 ::
cat > "$work/syslinux.cfg" <<EOF
SERIAL 0 115200
CONSOLE 0
PROMPT 0
TIMEOUT 0
DEFAULT ferric
LABEL ferric
  KERNEL /vmlinuz
  INITRD /initrd
  APPEND console=ttyS0,115200 root=UUID=$root_uuid ferric.image=whole-disk
EOF
touch -d "@$SOURCE_DATE_EPOCH" "$work/syslinux.cfg"
cp "$out.tmp/instance.kernel" "$work/vmlinuz"
cp "$out.tmp/instance.initramfs" "$work/initrd"
touch -d "@$SOURCE_DATE_EPOCH" "$work/vmlinuz" "$work/initrd"
mcopy -m -i "$boot" "$work/syslinux.cfg" "$work/vmlinuz" "$work/initrd" ::/
"$pkg/usr/bin/syslinux" --install "$boot"

disk="$out.tmp/whole-disk.raw"
truncate -s 32M "$disk"
sfdisk -q --no-reread --no-tell-kernel "$disk" >/dev/null <<EOF
label: dos
label-id: 0x46455252
start=2048, size=32768, type=6, bootable
start=34816, size=16384, type=83
EOF
dd if="$pkg/usr/lib/SYSLINUX/mbr.bin" of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$boot" of="$disk" bs=512 seek=2048 conv=notrunc,sparse status=none
dd if="$out.tmp/partition.img" of="$disk" bs=512 seek=34816 conv=notrunc,sparse status=none
qemu-img convert -q -f raw -O qcow2 "$disk" "$out.tmp/whole-disk.qcow2"

# --- manifest -------------------------------------------------------------------------------
cat > "$out.tmp/manifest.env" <<EOF
FIXTURES_KEY=$key
FIXTURES_DIR=$out
KERNEL_RELEASE=$kver
PACKAGES=${pins[*]}
DEPLOY_KERNEL=$out/deploy.kernel
KERNEL_ELF=$out/vmlinux
DEPLOY_RAMDISK=$out/deploy.initramfs
DEPLOY_AGENT=${agent:-none}
INSTANCE_KERNEL=$out/instance.kernel
INSTANCE_RAMDISK=$out/instance.initramfs
PARTITION_IMAGE=$out/partition.img
PARTITION_ROOT_UUID=$root_uuid
WHOLE_DISK_RAW=$out/whole-disk.raw
WHOLE_DISK_QCOW2=$out/whole-disk.qcow2
EOF
rm -rf "$work"
mv "$out.tmp" "$out"
trap - EXIT
# Keep the few most recent outputs (other worktrees' tests may still use one with another agent).
ls -1dt "$base"/*/manifest.env 2>/dev/null | tail -n +7 | xargs -r -n1 dirname | xargs -r rm -rf
print_manifest
