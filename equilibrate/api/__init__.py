"""The REST and WebSocket API (`equilibrate api`) for bank systems."""
