//! iSCSI (RFC 7143): PDU codec, userspace target (agent side) and initiator (conductor side).
