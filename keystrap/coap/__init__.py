"""In-band transport: CoAP (RFC 7252) between controller and server, with aiocoap."""
