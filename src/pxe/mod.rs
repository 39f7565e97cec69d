//! Provisioning-network services: DHCP, TFTP, HTTP boot, boot configs, image cache.
