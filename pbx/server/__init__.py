"""The call server: the asyncio shells around the call core (control socket, driver, transports),
the media runner and REST."""
