//! The deploy ramdisk agent (ironic-python-agent compatible), as a library; binary ferric-agent.
