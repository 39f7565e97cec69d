//! Ironic's objects (node, port, portgroup, chassis, conductor) as serde models with typed IDs.
