"""Realtime (WebSocket) sessions of the models whose catalog marks `realtime`: one module per protocol."""
