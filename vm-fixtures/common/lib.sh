# Shared by the deploy and instance initramfs /init scripts (busybox sh).

# Mount the pseudo filesystems and attach stdio to the console: the archive carries no device
# nodes (so the build needs no root), so the kernel could not open /dev/console for us.
early_setup() {
  mkdir -p /proc /sys /dev /run /tmp
  mount -t proc proc /proc
  mount -t sysfs sysfs /sys
  mount -t devtmpfs devtmpfs /dev
  mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
  exec 0</dev/console 1>/dev/console 2>&1
  echo 4 > /proc/sys/kernel/printk
}

# Prints a marker line on the serial console; tests wait for these.
marker() {
  read -r up _ < /proc/uptime
  echo "$* uptime=$up"
}

# Loads the modules listed (dependency order, computed at build time) in /etc/ferric/modules.
load_modules() {
  while read -r m; do
    [ -n "$m" ] || continue
    insmod "/lib/modules/$m.ko" 2>/dev/null
  done < /etc/ferric/modules
}

# Value of a key=value kernel command line parameter (last one wins), empty if absent.
cmdline_get() {
  v=""
  for arg in $(cat /proc/cmdline); do
    case "$arg" in
      "$1"=*) v="${arg#*=}" ;;
    esac
  done
  echo "$v"
}

# ACPI power button (QEMU system_powerdown) -> clean power off, like a real OS.
# (busybox acpid daemonizes only where /var/log and /var/run exist: run it in the background.)
start_acpid() {
  acpid -f -c /etc/acpi -p /run/acpid.pid -l /run/acpid.log </dev/null >/dev/null 2>&1 &
}
