"""The users of a SASL_PLAINTEXT listener: `sasl.plain.users.file`.

One `USER:HASH` a line, `#` comments and blank lines ignored. HASH is
`pbkdf2_sha256$ITERATIONS$SALT$KEY` (PBKDF2-HMAC-SHA256; salt and key in base64), what
`odradek sasl-password USER` prints: the file holds no password in clear. The broker
reads it at start (a wrong line is a named config error) and each gateway process when
it starts: a change takes a broker restart.
"""
import base64
import hashlib
import hmac
import os

from odradek.client.errors import InvalidConfig

__all__ = ["PlainUsers", "hash_password", "MECHANISMS", "ITERATIONS"]

MECHANISMS = ("PLAIN",)
ITERATIONS = 100_000


def hash_password(password, iterations=ITERATIONS, salt=None):
    """The HASH of a users-file line for `password`."""
    salt = salt if salt is not None else os.urandom(16)
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


class PlainUsers:
    """The users file: {user: (iterations, salt, key)}."""

    def __init__(self, users):
        self.users = users

    @classmethod
    def load(cls, path):
        """Read `path`; InvalidConfig names the line that is wrong."""
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise InvalidConfig(f"sasl.plain.users.file={path}: {e.strerror}") from None
        users = {}
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, _, hashed = line.partition(":")
            parts = hashed.split("$")
            try:
                assert user and len(parts) == 4 and parts[0] == "pbkdf2_sha256" and user not in users
                users[user] = (int(parts[1]), base64.b64decode(parts[2], validate=True),
                               base64.b64decode(parts[3], validate=True))
            except (AssertionError, ValueError):
                raise InvalidConfig(f"sasl.plain.users.file={path} line {n}: expected USER:pbkdf2_sha256$... as "
                                    f"'odradek sasl-password USER' prints it, each user once") from None
        if not users:
            raise InvalidConfig(f"sasl.plain.users.file={path} has no user")
        return cls(users)

    def verify(self, user, password):
        entry = self.users.get(user)
        if entry is None:
            hashlib.pbkdf2_hmac("sha256", password, b"x" * 16, ITERATIONS)    # as long as a known user takes
            return False
        iterations, salt, key = entry
        return hmac.compare_digest(hashlib.pbkdf2_hmac("sha256", password, salt, iterations), key)
