"""Helpers for the socket tests of this folder."""

from django.test import Client


def session_cookie(user) -> bytes:
    """A Cookie header value with a real signed-in session of `user`."""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()
