"""The researchers' web page: login, environments and sessions, and the VNC proxy behind the viewer."""
