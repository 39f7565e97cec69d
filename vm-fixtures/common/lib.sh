# Shared by the deploy and instance initramfs /init scripts and the instance root's /sbin/init
# (busybox sh).

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

# Loads the modules listed in /etc/ferric/modules (dependency order, computed at build time): a
# group only if one of its PCI devices is present (or it names none), a "?" group only if no
# virtio disk is there already. Written without forks: each costs tens of ms under TCG.
load_modules() {
  pci=""
  for f in /sys/bus/pci/devices/*/modalias; do
    [ -r "$f" ] && read -r a < "$f" && pci="$pci $a"
  done
  aliased=" " matched=" "
  # One fork to read it whole: ash's read builtin makes a syscall per byte.
  for entry in $(cat /etc/ferric/modaliases); do
    ag=${entry%%=*} pat=${entry#*=}
    case "$aliased" in *" $ag "*) ;; *) aliased="$aliased$ag " ;; esac
    case "$matched" in *" $ag "*) continue ;; esac
    for a in $pci; do
      case "$a" in $pat) matched="$matched$ag "; break ;; esac
    done
  done
  cur="" ok=0
  while read -r g m; do
    if [ "$g" != "$cur" ]; then
      cur=$g ok=1
      case "$g" in
        \?*) for b in /sys/block/vd*; do [ -e "$b" ] && ok=0; done ;;
      esac
      case "$aliased" in
        *" $g "*) case "$matched" in *" $g "*) ;; *) ok=0 ;; esac ;;
      esac
    fi
    [ "$ok" = 1 ] || continue
    [ -d "/sys/module/${m//-/_}" ] && continue
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
  acpid_listening $!
}

# Returns once acpid (PID) holds an input event device open, or after 5 s: a power button pressed
# before then is lost, and a BMC (or a test) may press it as soon as the boot marker shows.
acpid_listening() {
  for _ in $(seq 1 50); do
    ls -l "/proc/$1/fd" 2>/dev/null | grep -q /dev/input/event && return 0
    sleep 0.1
  done
}
