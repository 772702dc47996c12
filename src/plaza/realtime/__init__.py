"""The WebSocket layer: one endpoint, sessions across processes, frame handlers that contexts register."""
