//! REST API, wire-compatible with Ironic v1 (microversions, error envelope, resources).
