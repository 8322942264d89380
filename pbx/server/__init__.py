"""The call server: WebSocket sessions, REST endpoints and the media engine driver."""
