//! IPMI numbers by name, as the IPMI v2.0 specification assigns them: the network functions and
//! commands ferric sends (the service's client) and answers (ferric-sim's virtual BMC), their
//! completion codes, and the values of the command fields both sides read.
//!
//! Only the names are shared. The client and the BMC each encode and decode messages on their
//! own and are each checked against an outside peer (OpenIPMI's `ipmi_sim`, ipmitool), so a
//! misreading of the specification in one cannot hide behind the same code in the other.

/// Network functions of requests (IPMI v2.0 table 5-1); a response's is the request's plus one.
pub mod netfn {
    /// Chassis device requests: power, boot options.
    pub const CHASSIS: u8 = 0x00;
    /// Application requests: device identity, channel and session management.
    pub const APP: u8 = 0x06;
}

/// Commands of [`netfn::CHASSIS`] (IPMI v2.0 table G-1).
pub mod chassis {
    pub const GET_CHASSIS_STATUS: u8 = 0x01;
    pub const CHASSIS_CONTROL: u8 = 0x02;
    pub const SET_SYSTEM_BOOT_OPTIONS: u8 = 0x08;
    pub const GET_SYSTEM_BOOT_OPTIONS: u8 = 0x09;
}

/// Commands of [`netfn::APP`] (IPMI v2.0 table G-1).
pub mod app {
    pub const GET_DEVICE_ID: u8 = 0x01;
    pub const GET_SYSTEM_GUID: u8 = 0x37;
    pub const GET_CHANNEL_AUTH_CAPABILITIES: u8 = 0x38;
    pub const SET_SESSION_PRIVILEGE_LEVEL: u8 = 0x3B;
    pub const CLOSE_SESSION: u8 = 0x3C;
    pub const GET_CHANNEL_CIPHER_SUITES: u8 = 0x54;
}

/// Completion codes: the generic ones (IPMI v2.0 table 5-2) and the command-specific ones
/// (0x80-0xBE) of the commands above, named after their command.
pub mod completion {
    pub const OK: u8 = 0x00;
    /// Get/Set System Boot Options: the parameter selector is not supported.
    pub const BOOT_PARAMETER_NOT_SUPPORTED: u8 = 0x80;
    /// Set System Boot Options: "set in progress" requested while a set is already in progress.
    pub const BOOT_SET_IN_PROGRESS: u8 = 0x81;
    /// Set Session Privilege Level: above the channel's or the user's privilege limit.
    pub const PRIVILEGE_EXCEEDS_LIMIT: u8 = 0x81;
    /// Close Session: no such session (the virtual BMC also answers it to Set Session Privilege
    /// Level when the session has gone meanwhile).
    pub const INVALID_SESSION_ID: u8 = 0x87;
    /// Worth retrying: the BMC cannot take the command now.
    pub const NODE_BUSY: u8 = 0xC0;
    pub const INVALID_COMMAND: u8 = 0xC1;
    /// Worth retrying: the BMC timed out processing the command.
    pub const TIMEOUT: u8 = 0xC3;
    pub const REQUEST_DATA_LENGTH_INVALID: u8 = 0xC7;
    pub const INVALID_DATA_FIELD: u8 = 0xCC;
    /// Worth retrying: the BMC could not provide a response.
    pub const RESPONSE_UNAVAILABLE: u8 = 0xCE;
    pub const INSUFFICIENT_PRIVILEGE: u8 = 0xD4;
    pub const NOT_IN_PRESENT_STATE: u8 = 0xD5;
    pub const UNSPECIFIED: u8 = 0xFF;
}

/// Chassis Control's actions (request data byte 1, IPMI v2.0 table 28-4).
pub mod chassis_control {
    pub const POWER_DOWN: u8 = 0;
    pub const POWER_UP: u8 = 1;
    pub const POWER_CYCLE: u8 = 2;
    pub const HARD_RESET: u8 = 3;
    /// Pulse a diagnostic interrupt (NMI).
    pub const DIAGNOSTIC_INTERRUPT: u8 = 4;
    /// Initiate a soft shutdown through ACPI.
    pub const SOFT_SHUTDOWN: u8 = 5;
}

/// System boot options (IPMI v2.0 table 28-14): parameter selectors, and the values of the
/// fields ferric sets.
pub mod boot_option {
    /// Parameter 0: set in progress (a client's lock around a series of sets).
    pub const SET_IN_PROGRESS: u8 = 0;
    /// Parameter 3: which events leave the boot flags' valid bit set.
    pub const VALID_BIT_CLEARING: u8 = 3;
    /// Parameter 4: which software has acknowledged the boot info.
    pub const BOOT_INFO_ACKNOWLEDGE: u8 = 4;
    /// Parameter 5: the boot flags (the boot device override).
    pub const BOOT_FLAGS: u8 = 5;
    /// Parameter 3 bit: keep the valid bit when no Chassis Control follows within 60 seconds,
    /// so a one-time override set well before the power action still applies (Ironic sets it).
    pub const KEEP_VALID_AFTER_TIMEOUT: u8 = 0x08;

    /// Boot device selectors of parameter 5 (data byte 2, bits 5:2).
    pub mod device {
        pub const NONE: u8 = 0x0;
        pub const PXE: u8 = 0x1;
        pub const DISK: u8 = 0x2;
        /// Default hard drive, safe mode: read as a disk boot.
        pub const DISK_SAFE_MODE: u8 = 0x3;
        pub const CDROM: u8 = 0x5;
        pub const BIOS_SETUP: u8 = 0x6;
    }
}
