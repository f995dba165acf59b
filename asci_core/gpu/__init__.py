"""GPU desktops: the node side of VirtualGL (a 3DX server, per-session access to it)."""
