//! Hardware types and their interfaces (power, management, boot, deploy, network), one trait each.
