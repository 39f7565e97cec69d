"""Drives ferric's virtual Redfish BMC through sushy the way Ironic's redfish driver does.

Usage: sushy_peer.py URL USERNAME PASSWORD [CA_FILE]

Prints one JSON object (the observations the Rust test checks) on stdout; exits 0 when every
step ran, 1 with {"error": ...} otherwise.
"""

import json
import sys
import time
import traceback

import sushy
from sushy import auth

url, user, password = sys.argv[1:4]
verify = sys.argv[4] if len(sys.argv) > 4 else False
out = {"steps": []}


def step(name):
    out["steps"].append(name)


try:
    session_auth = auth.SessionOrBasicAuth(username=user, password=password)
    root = sushy.Sushy(url, auth=session_auth, verify=verify)
    out["redfish_version"] = root.redfish_version
    out["session_key_set"] = session_auth.get_session_key() is not None
    out["session_uri"] = session_auth.get_session_resource_id()
    step("connect")

    system = root.get_system()
    out["system_id"] = system.identity
    out["system_uuid"] = system.uuid
    out["power_initial"] = str(system.power_state.value)
    out["processor_count"] = system.processors.summary.count
    out["processor_arch"] = str(system.processors.summary.architecture.value)
    out["memory_gib"] = system.memory_summary.size_gib
    out["macs"] = sorted(system.ethernet_interfaces.summary.keys())
    out["simple_storage_max"] = system.simple_storage.max_size_bytes
    out["storage_max"] = system.storage.max_drive_size_bytes
    step("inventory")

    # Power: every reset type Ironic's driver may send.
    powers = {}
    for rt in [sushy.ResetType.ON, sushy.ResetType.FORCE_RESTART, sushy.ResetType.GRACEFUL_RESTART,
               sushy.ResetType.NMI, sushy.ResetType.POWER_CYCLE, sushy.ResetType.GRACEFUL_SHUTDOWN,
               sushy.ResetType.ON, sushy.ResetType.FORCE_OFF]:
        system.reset_system(rt)
        time.sleep(0.05)
        system.refresh()
        powers.setdefault(rt.value, []).append(str(system.power_state.value))
    out["powers"] = powers
    step("power")

    # Boot options.
    system.set_system_boot_options(sushy.BootSource.PXE,
                                   enabled=sushy.BootSourceOverrideEnabled.CONTINUOUS,
                                   mode=sushy.BootSourceOverrideMode.UEFI)
    system.refresh()
    out["boot_pxe"] = [system.boot.target.value, system.boot.enabled.value, system.boot.mode.value]
    system.set_system_boot_options(sushy.BootSource.HDD,
                                   enabled=sushy.BootSourceOverrideEnabled.ONCE,
                                   mode=sushy.BootSourceOverrideMode.LEGACY)
    system.refresh()
    out["boot_hdd"] = [system.boot.target.value, system.boot.enabled.value, system.boot.mode.value]
    system.set_system_boot_options(sushy.BootSource.UEFI_HTTP,
                                   enabled=sushy.BootSourceOverrideEnabled.ONCE,
                                   mode=sushy.BootSourceOverrideMode.UEFI,
                                   http_boot_uri="http://192.0.2.1:8080/boot.efi")
    system.refresh()
    out["boot_http"] = [system.boot.target.value, system.boot.enabled.value, system.boot.mode.value,
                        system.boot.http_boot_uri]
    system.set_system_boot_options(sushy.BootSource.CD,
                                   enabled=sushy.BootSourceOverrideEnabled.ONCE)
    system.refresh()
    out["boot_cd"] = [system.boot.target.value, system.boot.enabled.value, system.boot.http_boot_uri]
    step("boot")

    # Indicator LED.
    system.set_indicator_led(sushy.IndicatorLED.BLINKING)
    system.refresh()
    out["led"] = system.indicator_led.value
    step("led")

    # Virtual media on the Manager, then on the System.
    manager = root.get_manager()
    vm = [m for m in manager.virtual_media.get_members()
          if sushy.VirtualMediaType.CD in m.media_types][0]
    vm.insert_media("http://192.0.2.1:8080/manager.iso", inserted=True, write_protected=True)
    vm.refresh()
    out["mgr_vmedia_inserted"] = [vm.inserted, vm.image]
    vm.eject_media()
    vm.refresh()
    out["mgr_vmedia_ejected"] = [vm.inserted, vm.image]
    svm = [m for m in system.virtual_media.get_members()
           if sushy.VirtualMediaType.CD in m.media_types][0]
    svm.insert_media("http://192.0.2.1:8080/system.iso")
    vm.refresh()
    out["sys_vmedia_seen_on_manager"] = [vm.inserted, vm.image]
    svm.eject_media()
    svm.refresh()
    out["sys_vmedia_ejected"] = svm.inserted
    step("vmedia")

    # BIOS: read, set (pending), applied after a reset.
    bios = system.bios
    out["bios_before"] = bios.attributes.get("ProcTurboMode")
    bios.set_attributes({"ProcTurboMode": "Disabled", "BootRetryCount": 7})
    bios.refresh()
    out["bios_pending"] = dict(bios.pending_attributes)
    out["bios_current_before_reset"] = bios.attributes.get("ProcTurboMode")
    system.reset_system(sushy.ResetType.ON)
    bios.refresh()
    bios.invalidate()
    bios.refresh(force=True)
    out["bios_after_reset"] = [bios.attributes.get("ProcTurboMode"), bios.attributes.get("BootRetryCount")]
    step("bios")

    # Firmware update as a task.
    updates = root.get_update_service()
    fw_before = {m.identity: m.version for m in updates.firmware_inventory.get_members()}
    monitor = updates.simple_update("http://192.0.2.1:8080/bios-1.0.1.bin",
                                    targets=["/redfish/v1/UpdateService/FirmwareInventory/BIOS"],
                                    transfer_protocol="HTTP")
    states = []
    deadline = time.time() + 60
    while monitor.is_processing and time.time() < deadline:
        if monitor.task is not None:
            states.append(monitor.task.task_state.value)
        time.sleep(min(float(monitor.sleep_for), 0.5))
        monitor.refresh()
    final = monitor.response.json()
    out["task_states_seen"] = sorted(set(states))
    out["task_final"] = [final.get("TaskState"), final.get("PercentComplete")]
    updates.firmware_inventory.refresh()
    fw_after = {m.identity: m.version for m in updates.firmware_inventory.get_members()}
    out["firmware_before"] = fw_before
    out["firmware_after"] = fw_after
    tasks = root.get_task_service().tasks.get_members()
    out["tasks"] = [[t.identity, t.task_state.value] for t in tasks]
    step("update")

    # Sessions: listed, then closed (DELETE).
    sessions = root.get_session_service().sessions.get_members()
    out["sessions"] = len(sessions)
    session_auth.close()
    out["session_closed"] = session_auth.get_session_key() is None
    step("sessions")
except Exception as e:  # noqa: BLE001 - report everything to the Rust side
    out["error"] = "%s: %s" % (type(e).__name__, e)
    out["traceback"] = traceback.format_exc()
    print(json.dumps(out))
    sys.exit(1)

print(json.dumps(out))
