"""A pyghmi BMC (the engine of OpenStack VirtualBMC) for benches/ipmi.rs to compare against.

Usage: python pyghmi_bmc.py PORT USERNAME PASSWORD  (listens on 127.0.0.1 only)
"""
import sys

import pyghmi.ipmi.bmc as bmc


class BenchBmc(bmc.Bmc):
    """Keeps power and boot device in memory, like a fake VirtualBMC domain."""

    def __init__(self, authdata, port):
        super().__init__(authdata, port=port, address='127.0.0.1')
        self.power = 'off'
        self.bootdev = 'default'

    def get_power_state(self):
        return self.power

    def power_on(self):
        self.power = 'on'

    def power_off(self):
        self.power = 'off'

    def power_shutdown(self):
        self.power = 'off'

    def power_cycle(self):
        self.power = 'on'

    def power_reset(self):
        pass

    def get_boot_device(self):
        return self.bootdev

    def set_boot_device(self, bootdevice):
        self.bootdev = bootdevice


def main():
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    server = BenchBmc({user: password}, port)
    print('READY', flush=True)
    server.listen()


if __name__ == '__main__':
    main()
